"""Development JWTs for AUTH_MODE=hs256."""

from __future__ import annotations

import time
from typing import Any

import jwt

from settings import Settings


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
