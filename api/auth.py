"""Bearer JWT verification (spec 5.1): HS256 with a shared secret, or RS256/ES256 with keys from a JWKS.

Each mode accepts only its own algorithms. An otherwise valid but expired token is TOKEN_EXPIRED; every
other failure is UNAUTHORIZED. Both carry ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import jwt
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.log_context import log_event
from db.users import Identity
from domain.errors import AppError, ErrorCode
from domain.storable import is_storable
from settings import Settings

HS_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
JWKS_TTL_SECONDS = 600.0
JWKS_MIN_REFRESH_SECONDS = 60.0
JWKS_FETCH_TIMEOUT_SECONDS = 5.0
CLAIM_MAX = 255  # users.issuer / users.subject
# A verified token is remembered this long (never past its expiry), so that a client polling with the same
# token does not pay the signature check and claim parsing on every request.
VERIFIED_TTL_SECONDS = 60.0
VERIFIED_MAX_ENTRIES = 10_000


def auth_error(code: ErrorCode = ErrorCode.UNAUTHORIZED) -> AppError:
    return AppError(code, headers={"WWW-Authenticate": "Bearer"})


# Declares the bearer scheme in the OpenAPI document and splits the header; never answers by itself.
BEARER = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="`mandala token --sub USER` in development"
)


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case, token stripped)."""
    if credentials is None:
        raise auth_error()
    return credentials.credentials


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Identity: ...


class _Decoder(Protocol):
    async def decode(self, token: str) -> tuple[Identity, float]:
        """The token's identity and its ``exp``; raises the 401 AppError when the token is refused."""


class ClaimRules:
    """The checks after the signature: iss, aud (or Cognito ``client_id``), sub, and exp last.

    ``iss`` and ``sub`` are stored as given (users.issuer, users.subject), so text PostgreSQL cannot
    store (NUL, a lone surrogate) makes the token invalid. ``exp`` may lie at most ``max_lifetime``
    seconds (plus the leeway) ahead: a token that never expires is refused."""

    def __init__(self, leeway: int, issuer: str | None, audience: str | None, max_lifetime: int) -> None:
        self.leeway = leeway
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime

    def decode(self, token: str, key: Any, algorithms: list[str]) -> tuple[Identity, float]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                leeway=self.leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise auth_error() from None
        issuer = claims.get("iss", "")
        subject = claims.get("sub")
        if not (
            isinstance(issuer, str)
            and len(issuer) <= CLAIM_MAX
            and is_storable(issuer)
            and isinstance(subject, str)
            and 0 < len(subject) <= CLAIM_MAX
            and is_storable(subject)
            and (self.issuer is None or issuer == self.issuer)
            and self._audience_ok(claims)
        ):
            raise auth_error()
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            raise auth_error()
        now = time.time()
        if exp > now + self.max_lifetime + self.leeway:
            raise auth_error()
        self.refuse_expired(exp, now)
        identity = Identity(issuer, subject, _optional_str(claims, "email"), _optional_str(claims, "name"))
        return identity, float(exp)

    def refuse_expired(self, exp: float, now: float) -> None:
        if exp <= now - self.leeway:
            raise auth_error(ErrorCode.TOKEN_EXPIRED)

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        if self.audience is None:
            return True
        aud = claims.get("aud")
        if aud is None:
            return claims.get("client_id") == self.audience
        return aud == self.audience or (isinstance(aud, list) and self.audience in aud)


def _optional_str(claims: dict[str, Any], key: str) -> str | None:
    """A profile claim, dropped (not refused) when it is no string or cannot be stored."""
    value = claims.get(key)
    return value if isinstance(value, str) and is_storable(value) else None


class CachingVerifier:
    """A decoder's successes, remembered per token string for up to ``ttl_seconds``.

    A token that verified once stays valid until its ``exp`` (``nbf`` and the lifetime bound only become
    easier to meet), so a hit re-checks the expiry alone. Refusals are never remembered. The short TTL
    bounds how long a JWKS key that was withdrawn keeps working for a token already seen."""

    def __init__(
        self,
        decoder: _Decoder,
        rules: ClaimRules,
        ttl_seconds: float = VERIFIED_TTL_SECONDS,
        max_entries: int = VERIFIED_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._decoder = decoder
        self._rules = rules
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, tuple[Identity, float, float]] = {}

    async def verify(self, token: str) -> Identity:
        now = self._clock()
        hit = self._verified.get(token)
        if hit is not None and hit[2] > now:
            identity, exp, _ = hit
            self._rules.refuse_expired(exp, now)
            return identity
        identity, exp = await self._decoder.decode(token)
        if len(self._verified) >= self._max_entries:
            self._verified.clear()
        self._verified[token] = (identity, exp, now + self._ttl)
        return identity


class Hs256Decoder:
    def __init__(self, secret: str, rules: ClaimRules) -> None:
        self._secret = secret
        self._rules = rules

    async def decode(self, token: str) -> tuple[Identity, float]:
        return self._rules.decode(token, self._secret, list(HS_ALGORITHMS))


class JwksKeys:
    """The signing keys of a JWKS URL: cached for 10 minutes; an unknown ``kid`` refreshes the set at most
    once per 60 s. A failed fetch keeps the previous keys for another minute."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        ttl_seconds: float = JWKS_TTL_SECONDS,
        min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._http = http
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> jwt.PyJWK | None:
        if self._needs_fetch(kid):
            async with self._lock:
                if self._needs_fetch(kid):
                    await self._fetch()
        return (self._keys or {}).get(kid)

    def _needs_fetch(self, kid: str) -> bool:
        now = self._clock()
        if self._keys is None or now - self._fetched_at >= self._ttl:
            return True
        return kid not in self._keys and now - self._attempted_at >= self._min_refresh

    async def _fetch(self) -> None:
        now = self._attempted_at = self._clock()
        try:
            response = await self._http.get(self._url, timeout=JWKS_FETCH_TIMEOUT_SECONDS)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log_event(logging.WARNING, "jwks_fetch_failed", "JWKS fetch failed", cause=type(exc).__name__)
            if self._keys is not None:
                self._fetched_at = now - self._ttl + self._min_refresh
            return
        self._keys = {k.key_id: k for k in keys if k.key_id}
        self._fetched_at = now


class JwksDecoder:
    def __init__(self, keys: JwksKeys, rules: ClaimRules) -> None:
        self._keys = keys
        self._rules = rules

    async def decode(self, token: str) -> tuple[Identity, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise auth_error() from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in JWKS_ALGORITHMS or not isinstance(kid, str):
            raise auth_error()
        key = await self._keys.get(kid)
        if key is None or key.algorithm_name != alg:
            raise auth_error()
        return self._rules.decode(token, key.key, [alg])


def make_verifier(settings: Settings, http: httpx.AsyncClient) -> TokenVerifier:
    rules = ClaimRules(
        settings.jwt_leeway_seconds,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_max_lifetime_seconds,
    )
    decoder: _Decoder
    if settings.auth_mode == "jwks":
        assert settings.jwt_jwks_url is not None  # enforced by Settings
        decoder = JwksDecoder(JwksKeys(settings.jwt_jwks_url, http), rules)
    else:
        decoder = Hs256Decoder(settings.jwt_secret, rules)
    return CachingVerifier(decoder, rules)
