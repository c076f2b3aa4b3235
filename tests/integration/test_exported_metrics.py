"""docs/alert-rules.yml against spec 8.4, and against what a real API + worker actually export (M129)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ai.factory import build_provider
from db.repository import JobRepository
from observability import metrics
from settings import Settings
from tests.support.api import bearer, serve
from tests.support.jobs import subgoal_body, wait_status
from tests.support.servers import REPO_ROOT, free_port
from worker import build_worker

RULES = REPO_ROOT / "docs" / "alert-rules.yml"
RUNBOOK = REPO_ROOT / "docs" / "alert-runbook.md"
SPEC_ALERTS = {  # spec 8.4: alert → severities, and whether it must hold "for 2 periods"
    "JobErrorRateHigh": ({"HIGH"}, False),
    "JobTimeoutRateHigh": ({"HIGH"}, False),
    "JobFailuresBurst": ({"HIGH"}, False),
    "JobTimeoutsBurst": ({"HIGH"}, False),
    "JobTimeoutOccurred": ({"LOW"}, False),
    "ProcessingSlow": ({"MEDIUM"}, False),
    "QueueBacklog": ({"HIGH"}, True),
    "ApiErrors": ({"HIGH"}, True),
    "GenerateActivitySlow": ({"MEDIUM"}, True),
    "AiCostBudget": ({"MEDIUM", "HIGH"}, False),
    "PartialFailures": ({"LOW"}, False),
    "ReconcilerActive": ({"MEDIUM"}, False),
}
PROMQL_WORDS = {"sum", "max", "min", "avg", "rate", "increase", "by", "without", "and", "or", "unless", "on"}
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names of a PromQL expression, each with the label names it matches on."""
    out = []
    for name, matchers, call in SELECTOR.findall(re.sub(r"\[[^\]]*\]", "", expr)):
        if not call and name not in PROMQL_WORDS:
            out.append((name, set(MATCHER.findall(matchers))))
    return out


def test_every_alert_of_spec_8_4_is_defined_with_its_severity_and_runbook_section() -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    assert set(by_name) == set(SPEC_ALERTS)
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for name, (severities, two_periods) in SPEC_ALERTS.items():
        assert {r["labels"]["severity"] for r in by_name[name]} == severities, name
        assert all(("for" in r) == two_periods for r in by_name[name]), name
        assert all(
            r["annotations"]["runbook"] == f"docs/alert-runbook.md#{name.lower()}" for r in by_name[name]
        )
        assert f"\n## {name}\n" in runbook, name
        assert all(selectors(r["expr"]) for r in by_name[name]), name


def test_selectors_are_read_from_promql() -> None:
    expr = 'sum(increase(a_total{ErrorType="X", b=~"5.."}[15m])) / sum(rate(c_sum[5m])) >= 2 and max(d)'
    assert selectors(expr) == [("a_total", {"ErrorType", "b"}), ("c_sum", set()), ("d", set())]


async def scrape(port: int, names: set[str], seconds: float = 15.0) -> str:
    """The /metrics text once it holds a sample of every one of ``names`` (the Temporal SDK drains its
    metrics every second, and each of its instruments shows up at the first drain after its first use)."""
    missing = names
    async with httpx.AsyncClient() as http:
        for _ in range(int(seconds / 0.2)):
            body = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            missing = names - set(exported(body))
            if not missing:
                return body
            await asyncio.sleep(0.2)
    raise AssertionError(f"never exported: {sorted(missing)}")


def exported(body: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Sample name → label set → value."""
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            key = frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope"))
            out.setdefault(sample.name, {})[key] = sample.value
    return out


async def test_a_job_through_api_and_worker_exports_every_metric_the_alert_rules_use(
    repo: JobRepository, temporal_env: WorkflowEnvironment, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = make_settings(rate_limit_write_per_minute=1, rate_limit_read_per_minute=1000)
    auth = bearer("metrics-user", settings.jwt_secret)
    metrics.init_metrics(
        "worker", settings.model_copy(update={"metrics_enabled": True, "metrics_port": port})
    )
    try:
        async with metrics.temporal_runtime() as runtime:
            assert runtime is not None
            client = await Client.connect(
                temporal_env.client.service_client.config.target_host,
                data_converter=pydantic_data_converter,
                runtime=runtime,
            )
            provider = build_provider(settings)
            async with build_worker(client, settings, repo, provider), serve(settings) as http:
                accepted = await http.post("/api/ai/async/generate", json=subgoal_body(), headers=auth)
                assert accepted.status_code == 202, accepted.text
                limited = await http.post("/api/ai/async/generate", json=subgoal_body(), headers=auth)
                assert limited.status_code == 429
                await wait_status(repo, accepted.json()["data"]["processId"], "COMPLETED", seconds=30)
                metrics.set_queue_depth(0)  # what every reconciler run does
                body = await scrape(port, {name for rule in rules() for name, _ in selectors(rule["expr"])})
            await provider.aclose()
    finally:
        metrics.install(None)

    samples = exported(body)
    subgoal = ("ProcessingType", "SUBGOAL_GENERATION")
    assert samples["asyncprocessingstarted_total"] == {frozenset({subgoal, ("Trigger", "START")}): 1.0}
    assert samples["asyncprocessingcompleted_total"] == {frozenset({subgoal, ("Status", "COMPLETED")}): 1.0}
    assert samples["processingduration_milliseconds_count"] == {
        frozenset({subgoal, ("Status", "COMPLETED")}): 1.0
    }
    assert samples["ratelimitrejected_total"] == {frozenset({("Bucket", "write")}): 1.0}
    tokens = samples["aitokensused_total"]
    assert {dict(k)["Direction"] for k, v in tokens.items() if v > 0} == {"input", "output"}
    assert "offline" in {dict(k)["Provider"] for k in samples["aiestimatedcostusd_total"]}

    for rule in rules():
        for name, matched in selectors(rule["expr"]):
            assert name in samples, f"{rule['alert']}: {name} is not exported"
            labels = {k for key in samples[name] for k, _ in key}
            assert matched <= labels, f"{rule['alert']}: {name} has no label {matched - labels}"
