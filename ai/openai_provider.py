"""The ``openai`` provider (spec 3.2): one ``POST {base_url}/chat/completions`` per call, no retries.

Works with any OpenAI-compatible endpoint. Outcomes map to ``ProviderErrorKind`` as in the spec table.
Error messages name the status or the failed check only: never prompt or output text, the API key or
the response body. Cancelling the awaiting task aborts the in-flight request (httpx closes the
connection when its task is cancelled).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from ai.provider import AIRequest, AIResponse, ProviderError, ProviderErrorKind, read_usage

PROVIDER_NAME = "openai"

log = logging.getLogger("ai.openai")

_RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _transient(message: str, retry_after: float | None = None) -> ProviderError:
    return ProviderError(ProviderErrorKind.TRANSIENT, message, retry_after=retry_after)


def _rejected(message: str) -> ProviderError:
    return ProviderError(ProviderErrorKind.REJECTED, message)


def _invalid(message: str) -> ProviderError:
    return ProviderError(ProviderErrorKind.INVALID_RESPONSE, message)


def _status_error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    message = f"openai returned HTTP {status}"
    if status == 429 or status == 408 or status >= 500:
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return _transient(message, retry_after)
    # Other 4xx and unexpected 1xx/3xx (a redirect means a wrong base URL): repeating cannot help.
    return _rejected(message)


class OpenAIProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        json_mode: bool = True,
        timeout_seconds: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._json_mode = json_mode
        self.timeout_seconds = timeout_seconds  # bounds one whole call
        self._owns_client = client is None
        self._client = (
            client
            if client is not None
            else httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=0), timeout=timeout_seconds)
        )

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            await self._client.aclose()

    async def generate(self, request: AIRequest) -> AIResponse:
        started = time.monotonic()
        response = await self._post(self._body(request))
        if not response.is_success:
            raise _status_error(response)
        try:
            payload = response.json()
        except (ValueError, RecursionError):
            raise _invalid("openai response body is not valid JSON") from None
        return self._read(payload, request, latency_ms=int((time.monotonic() - started) * 1000))

    def _body(self, request: AIRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "top_p": request.top_p,
        }
        if self._json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        # httpx timeouts bound each phase; asyncio.timeout bounds the whole call, so a server that
        # trickles bytes cannot hold the activity past its start-to-close timeout.
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._client.post(
                    self._url, json=body, headers=self._headers, timeout=self.timeout_seconds
                )
        except (TimeoutError, httpx.TimeoutException):
            raise _transient("openai request timed out") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            raise _transient(f"openai request failed: {type(exc).__name__}") from None
        except httpx.DecodingError:
            raise _invalid("openai response body could not be decoded") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Invalid URL or scheme, local protocol misuse: configuration errors that a retry cannot fix.
            raise _rejected(f"openai request could not be sent: {type(exc).__name__}") from None

    def _read(self, payload: Any, request: AIRequest, *, latency_ms: int) -> AIResponse:
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _invalid("openai response has no choices")
        choice = choices[0]
        finish_reason = choice.get("finish_reason")
        message = choice.get("message")
        if finish_reason == "content_filter":
            raise _rejected("openai refused the request (content filter)")
        if not isinstance(message, dict):
            raise _invalid("openai response has no message")
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            raise _rejected("openai refused the request (model refusal)")
        if finish_reason == "length":
            raise _invalid("openai output was truncated (finish_reason length)")
        text = message.get("content")
        if not isinstance(text, str) or not text.strip():
            raise _invalid("openai response text is empty")
        model = payload.get("model")
        model = model if isinstance(model, str) and model else self._model
        input_tokens, output_tokens = read_usage(
            payload, "prompt_tokens", "completion_tokens", request, PROVIDER_NAME, model
        )
        return AIResponse(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            provider=PROVIDER_NAME,
            model=model,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            latency_ms=latency_ms,
        )
