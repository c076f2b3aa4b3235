"""The ``bedrock`` provider on a real boto3 ``bedrock-runtime`` client (spec 3.2; checklist M131).

Responses come from botocore's ``Stubber``; network failures and cancellation use a loopback server.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
import pytest_asyncio
from botocore.config import Config
from botocore.stub import Stubber

from ai.bedrock_provider import BedrockProvider, make_client
from ai.factory import build_provider
from ai.provider import ProviderError, ProviderErrorKind
from settings import Settings
from tests.support.providers import SYSTEM, USER, make_request

REGION = "ap-northeast-1"
MODEL_ID = "amazon.nova-micro-v1:0"
OUTPUT = '{"subGoals": [], "note": "OUTPUT-SENTINEL"}'
SENTINELS = ("SYSTEM-SENTINEL", "USER-SENTINEL", "OUTPUT-SENTINEL")
CONVERSE_RESPONSE = (
    b'{"output":{"message":{"role":"assistant","content":[{"text":"{}"}]}},"stopReason":"end_turn",'
    b'"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},"metrics":{"latencyMs":1}}'
)


@pytest.fixture(scope="module", autouse=True)
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials, and no profile or config file of the machine running the tests."""
    absent = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTESTTEST")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        mp.setenv("AWS_CONFIG_FILE", str(absent / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(absent / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="module")
def stub_client(aws_env: None) -> Any:
    """One client for the module (building one loads the service model); each test stubs it afresh."""
    return make_client(REGION, 115.0)


@pytest.fixture
def stubbed(stub_client: Any) -> Iterator[tuple[BedrockProvider, Stubber]]:
    with Stubber(stub_client) as stubber:
        provider = BedrockProvider(
            model_id=MODEL_ID, region=REGION, timeout_seconds=115.0, client=stub_client
        )
        yield provider, stubber


def converse_output(
    content: list[dict[str, Any]] | None = None, stop_reason: str = "end_turn"
) -> dict[str, Any]:
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": content if content is not None else [{"text": OUTPUT}],
            }
        },
        "stopReason": stop_reason,
        "usage": {"inputTokens": 321, "outputTokens": 123, "totalTokens": 444},
        "metrics": {"latencyMs": 42},
    }


async def expect_error(provider: BedrockProvider, kind: ProviderErrorKind) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.generate(make_request())
    err = caught.value
    assert err.kind is kind, str(err)
    for sentinel in SENTINELS:
        assert sentinel not in str(err)
    return err


def test_client_has_retries_off_and_the_given_timeouts(stub_client: Any) -> None:
    config = stub_client.meta.config

    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert (config.read_timeout, config.connect_timeout) == (115.0, 10.0)
    assert config.region_name == REGION


async def test_success_sends_system_separately_and_reads_usage(
    stubbed: tuple[BedrockProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_output(),
        expected_params={
            "modelId": MODEL_ID,
            "system": [{"text": SYSTEM}],
            "messages": [{"role": "user", "content": [{"text": USER}]}],
            "inferenceConfig": {"temperature": 0.7, "maxTokens": 2000, "topP": 0.9},
        },
    )

    response = await provider.generate(make_request())

    stubber.assert_no_pending_responses()
    assert (response.text, response.provider, response.model) == (OUTPUT, "bedrock", MODEL_ID)
    assert (response.input_tokens, response.output_tokens) == (321, 123)
    assert response.finish_reason == "end_turn"


async def test_first_text_block_is_used(stubbed: tuple[BedrockProvider, Stubber]) -> None:
    provider, stubber = stubbed
    content: list[dict[str, Any]] = [
        {"toolUse": {"toolUseId": "t1", "name": "x", "input": {}}},
        {"text": OUTPUT},
        {"text": "second"},
    ]
    stubber.add_response("converse", converse_output(content))

    assert (await provider.generate(make_request())).text == OUTPUT


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 429, ProviderErrorKind.TRANSIENT),
        ("ServiceUnavailableException", 503, ProviderErrorKind.TRANSIENT),
        ("InternalServerException", 500, ProviderErrorKind.TRANSIENT),
        ("ModelTimeoutException", 408, ProviderErrorKind.TRANSIENT),
        ("ModelNotReadyException", 429, ProviderErrorKind.TRANSIENT),
        ("ValidationException", 400, ProviderErrorKind.REJECTED),
        ("AccessDeniedException", 403, ProviderErrorKind.REJECTED),
        ("ResourceNotFoundException", 404, ProviderErrorKind.REJECTED),
        ("SomeFutureException", 400, ProviderErrorKind.REJECTED),
        ("SomeFutureException", 500, ProviderErrorKind.TRANSIENT),
    ],
)
async def test_service_errors(
    stubbed: tuple[BedrockProvider, Stubber], code: str, status: int, kind: ProviderErrorKind
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("converse", code, f"details about OUTPUT-SENTINEL {code}", status)

    err = await expect_error(provider, kind)

    assert code in str(err)
    assert err.retry_after is None


@pytest.mark.parametrize(
    "output",
    [
        pytest.param(converse_output([]), id="no-content"),
        pytest.param(
            converse_output([{"toolUse": {"toolUseId": "t1", "name": "x", "input": {}}}]), id="no-text"
        ),
        pytest.param(converse_output([{"text": "  "}]), id="blank-text"),
        pytest.param(converse_output(stop_reason="max_tokens"), id="max-tokens"),
    ],
)
async def test_unusable_output_is_invalid_response(
    stubbed: tuple[BedrockProvider, Stubber], output: dict[str, Any]
) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", output)

    await expect_error(provider, ProviderErrorKind.INVALID_RESPONSE)


@pytest.mark.parametrize("stop_reason", ["content_filtered", "guardrail_intervened"])
async def test_filtered_output_is_rejected(
    stubbed: tuple[BedrockProvider, Stubber], stop_reason: str
) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_output(stop_reason=stop_reason))

    await expect_error(provider, ProviderErrorKind.REJECTED)


# --- network: a loopback endpoint ---------------------------------------------------------------------


class SilentEndpoint:
    """Accepts a request and answers only when ``release`` is set (or never)."""

    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            self.received.set()
            await asyncio.wait_for(self.release.wait(), 10)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(CONVERSE_RESPONSE)}\r\n\r\n".encode()
                + CONVERSE_RESPONSE
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[SilentEndpoint]:
    server = SilentEndpoint()
    await server.start()
    yield server
    server.release.set()
    await server.stop()


def endpoint_client(url: str, read_timeout: float) -> Any:
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=read_timeout)
    return boto3.session.Session().client(
        "bedrock-runtime", region_name=REGION, endpoint_url=url, config=config
    )


async def test_read_timeout_is_transient(endpoint: SilentEndpoint) -> None:
    client = endpoint_client(endpoint.url, read_timeout=0.3)
    provider = BedrockProvider(model_id=MODEL_ID, region=REGION, timeout_seconds=10, client=client)

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert "ReadTimeoutError" in str(err)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens there
    client = endpoint_client(f"http://127.0.0.1:{port}", read_timeout=1)
    provider = BedrockProvider(model_id=MODEL_ID, region=REGION, timeout_seconds=10, client=client)

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert "EndpointConnectionError" in str(err)


async def test_overall_timeout_stops_waiting_for_the_thread(endpoint: SilentEndpoint) -> None:
    client = endpoint_client(endpoint.url, read_timeout=10)
    provider = BedrockProvider(model_id=MODEL_ID, region=REGION, timeout_seconds=0.3, client=client)
    started = time.monotonic()

    err = await expect_error(provider, ProviderErrorKind.TRANSIENT)

    assert time.monotonic() - started < 2
    assert "timed out" in str(err)


async def test_cancellation_stops_waiting_and_discards_the_late_result(endpoint: SilentEndpoint) -> None:
    client = endpoint_client(endpoint.url, read_timeout=10)
    call_finished = threading.Event()
    client.meta.events.register("after-call.bedrock-runtime.Converse", lambda **_: call_finished.set())
    provider = BedrockProvider(model_id=MODEL_ID, region=REGION, timeout_seconds=30, client=client)
    task = asyncio.create_task(provider.generate(make_request()))
    await asyncio.wait_for(endpoint.received.wait(), 5)

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1
    assert not call_finished.is_set()  # the boto3 call is still blocked in its thread

    endpoint.release.set()
    assert await asyncio.to_thread(call_finished.wait, 5)  # the late result arrived and went nowhere
    assert task.cancelled()


# --- factory ---------------------------------------------------------------------------------------


def test_factory_builds_bedrock_with_the_longest_activity_timeout_minus_5s() -> None:
    settings = Settings(
        ai_provider="bedrock",
        activity_timeout_seconds_subgoal=100,
        activity_timeout_seconds_action=200,
        activity_timeout_seconds_task=150,
    )

    provider = build_provider(settings)

    assert isinstance(provider, BedrockProvider)
    assert provider.name == "bedrock"
    assert provider.timeout_seconds == 195


def test_factory_explains_a_missing_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ai.bedrock_provider")
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail as if not installed

    with pytest.raises(RuntimeError, match=r"goal-mandala\[bedrock\]"):
        build_provider(Settings(ai_provider="bedrock"))
