"""The ``bedrock`` provider (spec 3.2): boto3 ``bedrock-runtime`` ``converse``, one attempt per call.

Needs the optional ``bedrock`` extra; ``ai.factory`` imports this module only when AI_PROVIDER=bedrock.
boto3 has no type stubs, so the client stays ``Any`` behind ``make_client`` and ``BedrockProvider``.
The blocking call runs in a worker thread. A cancelled or timed-out call stops waiting at once; the
thread runs on until botocore's own read timeout and its late result is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ai.provider import AIRequest, AIResponse, ProviderError, ProviderErrorKind, read_usage

PROVIDER_NAME = "bedrock"
MAX_CONNECT_TIMEOUT_SECONDS = 10.0

log = logging.getLogger("ai.bedrock")

_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelNotReadyException",
    }
)
_REJECTED_CODES = frozenset({"ValidationException", "AccessDeniedException", "ResourceNotFoundException"})
_REJECTED_STOP_REASONS = frozenset({"content_filtered", "guardrail_intervened"})


def make_client(region: str, timeout_seconds: float) -> Any:
    """A ``bedrock-runtime`` client with botocore retries off (one attempt) and the given read timeout."""
    config = Config(
        region_name=region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=timeout_seconds,
        connect_timeout=min(timeout_seconds, MAX_CONNECT_TIMEOUT_SECONDS),
    )
    return boto3.session.Session().client("bedrock-runtime", config=config)


def _classify(exc: BotoCoreError | ClientError) -> ProviderError:
    """Map a botocore failure to a provider error; the message holds only the error code or type."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"bedrock returned {code} (HTTP {status})"
        if code in _TRANSIENT_CODES:
            return ProviderError(ProviderErrorKind.TRANSIENT, message)
        if code in _REJECTED_CODES or (isinstance(status, int) and 400 <= status < 500):
            return ProviderError(ProviderErrorKind.REJECTED, message)
        return ProviderError(ProviderErrorKind.TRANSIENT, message)
    message = f"bedrock request failed: {type(exc).__name__}"
    if isinstance(exc, (HTTPClientError, BotoConnectionError)):
        return ProviderError(ProviderErrorKind.TRANSIENT, message)
    if isinstance(exc, (ParamValidationError, NoCredentialsError, NoRegionError)):
        # Our request or our configuration is wrong: repeating the call cannot help.
        return ProviderError(ProviderErrorKind.REJECTED, message)
    return ProviderError(ProviderErrorKind.TRANSIENT, message)


def _first_text(output: Any) -> str | None:
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            return str(block["text"])
    return None


class BedrockProvider:
    def __init__(
        self, *, model_id: str, region: str, timeout_seconds: float, client: Any | None = None
    ) -> None:
        self._model_id = model_id
        self.timeout_seconds = timeout_seconds  # bounds one whole call
        self._owns_client = client is None
        self._client: Any = client if client is not None else make_client(region, timeout_seconds)

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    async def generate(self, request: AIRequest) -> AIResponse:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                result = await asyncio.to_thread(self._converse, request)
        except TimeoutError:
            raise ProviderError(ProviderErrorKind.TRANSIENT, "bedrock request timed out") from None
        except (BotoCoreError, ClientError) as exc:
            raise _classify(exc) from None
        return self._read(result, request, latency_ms=int((time.monotonic() - started) * 1000))

    def _converse(self, request: AIRequest) -> Any:
        return self._client.converse(
            modelId=self._model_id,
            system=[{"text": request.system}],
            messages=[{"role": "user", "content": [{"text": request.user}]}],
            inferenceConfig={
                "temperature": request.temperature,
                "maxTokens": request.max_tokens,
                "topP": request.top_p,
            },
        )

    def _read(self, result: Any, request: AIRequest, *, latency_ms: int) -> AIResponse:
        if not isinstance(result, dict):
            raise ProviderError(ProviderErrorKind.INVALID_RESPONSE, "bedrock response is not an object")
        stop_reason = result.get("stopReason")
        if stop_reason in _REJECTED_STOP_REASONS:
            raise ProviderError(ProviderErrorKind.REJECTED, f"bedrock refused the request ({stop_reason})")
        if stop_reason == "max_tokens":
            raise ProviderError(
                ProviderErrorKind.INVALID_RESPONSE, "bedrock output was truncated (stopReason max_tokens)"
            )
        text = _first_text(result.get("output"))
        if text is None:
            raise ProviderError(ProviderErrorKind.INVALID_RESPONSE, "bedrock response has no text block")
        if not text.strip():
            raise ProviderError(ProviderErrorKind.INVALID_RESPONSE, "bedrock response text is empty")
        input_tokens, output_tokens = read_usage(
            result, "inputTokens", "outputTokens", request, PROVIDER_NAME, self._model_id
        )
        return AIResponse(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            provider=PROVIDER_NAME,
            model=self._model_id,
            finish_reason=stop_reason if isinstance(stop_reason, str) else None,
            latency_ms=latency_ms,
        )

    async def aclose(self) -> None:
        """Close the client's connection pool if this provider created the client."""
        if self._owns_client:
            await asyncio.to_thread(self._client.close)
