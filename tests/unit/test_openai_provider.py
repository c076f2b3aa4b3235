"""The ``openai`` provider against a real loopback HTTP server (spec 3.2; checklist M130).

The server is a small HTTP/1.1 responder on ``asyncio.start_server``. Each test queues the replies it
wants and inspects the requests the provider sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from ai.factory import build_provider
from ai.openai_provider import OpenAIProvider, parse_retry_after
from ai.provider import ProviderError, ProviderErrorKind
from settings import Settings
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.providers import SYSTEM, USER, make_request

API_KEY = "sk-test-KEY-SENTINEL-0123456789"
OUTPUT = '{"subGoals": [], "note": "OUTPUT-SENTINEL"}'
SENTINELS = (API_KEY, "SYSTEM-SENTINEL", "USER-SENTINEL", "OUTPUT-SENTINEL")
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
CONFIGURED_MODEL = "gpt-4o-mini"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def provider(server: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(base_url=server.base_url, api_key=API_KEY, model=CONFIGURED_MODEL, timeout_seconds=5)
    yield p
    await p.aclose()


def completion(
    content: Any = OUTPUT,
    finish_reason: str | None = "stop",
    usage: dict[str, Any] | None = None,
    **message: Any,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": RESPONSE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage if usage is not None else {"prompt_tokens": 321, "completion_tokens": 123},
    }


async def expect_error(provider: OpenAIProvider, kind: ProviderErrorKind) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.generate(make_request())
    err = caught.value
    assert err.kind is kind, str(err)
    for sentinel in SENTINELS:
        assert sentinel not in str(err)
    return err


# --- success ---------------------------------------------------------------------------------------


async def test_valid_output_sends_the_spec_request_and_reads_usage(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    server.replies.append(Reply(body=completion()))

    response = await provider.generate(make_request())

    assert (response.text, response.provider, response.model) == (OUTPUT, "openai", RESPONSE_MODEL)
    assert (response.input_tokens, response.output_tokens) == (321, 123)
    assert response.finish_reason == "stop"
    assert response.latency_ms >= 0
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.json() == {
        "model": CONFIGURED_MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "temperature": 0.7,
        "max_tokens": 2000,
        "top_p": 0.9,
        "response_format": {"type": "json_object"},
    }


async def test_json_mode_off_omits_response_format_and_model_falls_back(server: FakeOpenAI) -> None:
    body = completion()
    del body["model"]
    server.replies.append(Reply(body=body))
    provider = OpenAIProvider(
        base_url=server.base_url + "/",
        api_key=API_KEY,
        model="local-model",
        json_mode=False,
        timeout_seconds=5,
    )
    try:
        response = await provider.generate(make_request())
    finally:
        await provider.aclose()

    assert response.model == "local-model"
    assert server.requests[0].path == "/v1/chat/completions"
    assert "response_format" not in server.requests[0].json()


async def test_missing_usage_counts_zero_and_is_logged(
    server: FakeOpenAI, provider: OpenAIProvider, caplog: pytest.LogCaptureFixture
) -> None:
    body = completion()
    del body["usage"]
    server.replies.append(Reply(body=body))

    with caplog.at_level(logging.WARNING, logger="ai.openai"):
        response = await provider.generate(make_request())

    assert (response.input_tokens, response.output_tokens) == (0, 0)
    assert [getattr(r, "event", None) for r in caplog.records] == ["ai_usage_missing"]


# --- INVALID_RESPONSE --------------------------------------------------------------------------------


async def test_invalid_json_body_then_valid(server: FakeOpenAI, provider: OpenAIProvider) -> None:
    server.replies.extend([Reply(body=b'{"choices": [OUTPUT-SENTINEL'), Reply(body=completion())])

    await expect_error(provider, ProviderErrorKind.INVALID_RESPONSE)
    response = await provider.generate(make_request())

    assert response.text == OUTPUT


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(completion(finish_reason="length"), id="finish-length"),
        pytest.param(completion(content=""), id="empty-text"),
        pytest.param(completion(content="  \n "), id="blank-text"),
        pytest.param(completion(content=None), id="null-content"),
        pytest.param({"model": RESPONSE_MODEL, "choices": []}, id="no-choices"),
        pytest.param({"model": RESPONSE_MODEL}, id="choices-missing"),
        pytest.param({"choices": [{"index": 0, "finish_reason": "stop"}]}, id="no-message"),
        pytest.param([OUTPUT], id="json-array"),
    ],
)
async def test_unusable_output_is_invalid_response(
    server: FakeOpenAI, provider: OpenAIProvider, body: Any
) -> None:
    server.replies.append(Reply(body=body))

    await expect_error(provider, ProviderErrorKind.INVALID_RESPONSE)


# --- TRANSIENT -----------------------------------------------------------------------------------------


async def test_429_with_retry_after_seconds(server: FakeOpenAI, provider: OpenAIProvider) -> None:
    server.replies.append(
        Reply(status=429, body={"error": {"message": "Rate limit"}}, headers={"Retry-After": "3"})
    )

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert err.retry_after == 3.0
    assert "429" in str(err)


async def test_503_with_retry_after_http_date(server: FakeOpenAI, provider: OpenAIProvider) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.replies.append(Reply(status=503, body={"error": {}}, headers={"Retry-After": when}))

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert err.retry_after is not None
    assert 100 < err.retry_after <= 120


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_transient(
    server: FakeOpenAI, provider: OpenAIProvider, status: int
) -> None:
    server.replies.append(Reply(status=status, body={"error": {"message": "OUTPUT-SENTINEL"}}))

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert err.retry_after is None


async def test_response_slower_than_the_client_timeout_is_transient(server: FakeOpenAI) -> None:
    server.replies.append(Reply(body=completion(), delay=3))
    provider = OpenAIProvider(base_url=server.base_url, api_key=API_KEY, model="m", timeout_seconds=0.3)
    started = time.monotonic()
    try:
        await expect_error(provider, ProviderErrorKind.TRANSIENT)
    finally:
        await provider.aclose()

    assert time.monotonic() - started < 2
    await asyncio.wait_for(server.client_closed_early.wait(), 2)


async def test_trickling_response_is_cut_at_the_overall_timeout(server: FakeOpenAI) -> None:
    # Every byte arrives within the per-read timeout; only the whole-call deadline can stop this.
    server.replies.append(Reply(body=completion(), trickle=0.1))
    provider = OpenAIProvider(base_url=server.base_url, api_key=API_KEY, model="m", timeout_seconds=0.5)
    started = time.monotonic()
    try:
        err = await expect_error(provider, ProviderErrorKind.TRANSIENT)
    finally:
        await provider.aclose()

    assert time.monotonic() - started < 2
    assert "timed out" in str(err)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens there
    provider = OpenAIProvider(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, model="m", timeout_seconds=2
    )
    try:
        err = await expect_error(provider, ProviderErrorKind.TRANSIENT)
    finally:
        await provider.aclose()

    assert "ConnectError" in str(err)


# --- REJECTED ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_rejected(server: FakeOpenAI, provider: OpenAIProvider, status: int) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY}. OUTPUT-SENTINEL"}}
    server.replies.append(Reply(status=status, body=body, headers={"Retry-After": "3"}))

    err = await expect_error(provider, ProviderErrorKind.REJECTED)

    assert err.retry_after is None
    assert str(status) in str(err)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            completion(content="OUTPUT-SENTINEL", finish_reason="content_filter"), id="content-filter"
        ),
        pytest.param(completion(content=None, refusal="I can't help with OUTPUT-SENTINEL"), id="refusal"),
    ],
)
async def test_refusals_are_rejected(server: FakeOpenAI, provider: OpenAIProvider, body: Any) -> None:
    server.replies.append(Reply(body=body))

    await expect_error(provider, ProviderErrorKind.REJECTED)


# --- cancellation ----------------------------------------------------------------------------------


async def test_cancelling_the_task_aborts_the_in_flight_request(
    server: FakeOpenAI, provider: OpenAIProvider
) -> None:
    server.replies.append(Reply(body=completion(), stall=30))
    task = asyncio.create_task(provider.generate(make_request()))
    await asyncio.wait_for(server.received.wait(), 5)
    await asyncio.sleep(0.1)  # the client is now reading the stalled body

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await asyncio.wait_for(server.client_closed_early.wait(), 2)
    assert server.responses_completed == 0


# --- Retry-After parsing ------------------------------------------------------------------------------

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 Jan 2025 12:02:00 GMT", 120.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),
        ("Wednesday, 01-Jan-25 12:00:30 GMT", 30.0),
        ("9" * 400, None),
        ("-1", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# --- factory ---------------------------------------------------------------------------------------


async def test_factory_builds_openai_with_the_longest_activity_timeout_minus_5s() -> None:
    settings = Settings(
        ai_provider="openai",
        openai_api_key=API_KEY,
        activity_timeout_seconds_subgoal=60,
        activity_timeout_seconds_action=120,
        activity_timeout_seconds_task=90,
    )
    provider = build_provider(settings)
    assert isinstance(provider, OpenAIProvider)
    assert provider.name == "openai"
    assert provider.timeout_seconds == 115
    await provider.aclose()


async def test_factory_timeout_is_at_least_one_second() -> None:
    settings = Settings(
        ai_provider="openai",
        activity_timeout_seconds_subgoal=3,
        activity_timeout_seconds_action=3,
        activity_timeout_seconds_task=3,
    )
    provider = build_provider(settings)
    assert isinstance(provider, OpenAIProvider)
    assert provider.timeout_seconds == 1
    await provider.aclose()
