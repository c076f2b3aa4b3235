-- wrk's summary as one parseable line (bench/http_load.py): requests, duration (µs), p95 (µs),
-- answers other than 2xx/3xx, socket errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(95), e.status, e.connect + e.read + e.write + e.timeout))
end
