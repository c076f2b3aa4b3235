"""The REST API as the client sees it (docs/api.md): one method per endpoint, errors as ApiError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from cli.client.config import Connection

JOBS = "/api/ai/async"
REQUEST_TIMEOUT = 30.0
# The server sends a keepalive every 15 s; a stream silent for longer than this is treated as dropped.
STREAM_READ_TIMEOUT = 45.0


class ApiError(Exception):
    """An error answer in the envelope (code, message in the user's language), or no answer at all."""

    def __init__(self, code: str, message: str, status: int | None = None, details: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.status = status
        self.details = details


class ApiClient:
    def __init__(self, conn: Connection) -> None:
        self._http = httpx.Client(
            base_url=conn.api_url,
            headers={"Authorization": f"Bearer {conn.token}", "Accept-Language": conn.lang.value},
            timeout=REQUEST_TIMEOUT,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, job_type: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"{JOBS}/generate", json={"type": job_type, "params": params})

    def status(self, process_id: str) -> dict[str, Any]:
        return self._call("GET", f"{JOBS}/status/{process_id}")

    def cancel(self, process_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return self._call("POST", f"{JOBS}/cancel/{process_id}", json=body)

    def retry(self, process_id: str) -> dict[str, Any]:
        return self._call("POST", f"{JOBS}/retry/{process_id}", json={})

    def history(self, **filters: str | int | None) -> dict[str, Any]:
        query = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", f"{JOBS}/history", params=query)

    def goal(self, goal_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/goals/{goal_id}")

    @contextmanager
    def event_stream(self, process_id: str, last_event_id: int) -> Iterator[Iterator[ServerSentEvent]]:
        """The SSE stream of a job after ``last_event_id`` (spec 5.8). Transport errors propagate."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last_event_id)}
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=STREAM_READ_TIMEOUT)
        url = f"{JOBS}/events/{process_id}"
        with connect_sse(self._http, "GET", url, headers=headers, timeout=timeout) as source:
            if source.response.status_code != 200:
                source.response.read()
                raise _error_of(source.response)
            yield source.iter_sse()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                "CONNECTION_ERROR", f"cannot reach the API at {self._http.base_url}: {exc}"
            ) from exc
        if not response.is_success:
            raise _error_of(response)
        data: dict[str, Any] = response.json()["data"]
        return data


def _error_of(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(error["code"], error["message"], response.status_code, error.get("details"))
    except (ValueError, KeyError, TypeError):
        return ApiError(f"HTTP_{response.status_code}", response.reason_phrase, response.status_code)
