"""Development JWTs for AUTH_MODE=hs256: `mandala token` and the web page's development sign-in."""

from __future__ import annotations

import time
from typing import Any

import jwt

from settings import DEV_JWT_SECRET, AppEnv, Settings


def issue_dev_token(
    sub: str,
    secret: str,
    expires_in: int = 3600,
    issuer: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """An HS256 token for `sub`, valid for `expires_in` seconds.

    `extra` adds claims such as `aud`; it cannot override sub, iat and exp, nor iss when `issuer` is given.
    """
    if not sub:
        raise ValueError("sub must not be empty")
    if expires_in <= 0:
        raise ValueError("expires_in must be a positive number of seconds")
    now = int(time.time())
    claims: dict[str, Any] = {**(extra or {}), "sub": sub, "iat": now, "exp": now + expires_in}
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def dev_token_for(settings: Settings, sub: str, expires_in: int = 3600) -> str:
    """A development token that the configured API accepts: JWT_SECRET, and JWT_ISSUER / JWT_AUDIENCE when
    they are set. Only meaningful with AUTH_MODE=hs256."""
    extra = {"aud": settings.jwt_audience} if settings.jwt_audience else None
    return issue_dev_token(sub, settings.jwt_secret, expires_in, issuer=settings.jwt_issuer, extra=extra)


def dev_tokens_allowed(settings: Settings) -> bool:
    """Whether the API may mint tokens for the web page: only while it verifies them with the public
    development secret, which lets anyone sign a token anyway (docs/api.md)."""
    return (
        settings.auth_mode == "hs256"
        and settings.jwt_secret == DEV_JWT_SECRET
        and settings.app_env is not AppEnv.PRODUCTION
    )
