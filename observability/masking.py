"""Log masking (spec 8.2), applied to every record including nested objects and lists."""

from __future__ import annotations

import re
from typing import Any

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(postgresql|postgres|mysql|mongodb)://([^:/@\s]+):[^@\s]*@", re.I), r"\1://\2:***@"),
    (re.compile(r"\bsk-[A-Za-z0-9]+"), "sk-***"),
    (re.compile(r"\bbearer\s+[A-Za-z0-9._~+/=-]+", re.I), "Bearer ***"),
    (re.compile(r"\bpassword\s*[=: ]\s*[^\s,;&]+", re.I), "password=***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "jwt.***"),
    (re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"), r"***@\1"),
    # Not inside a longer token: a UUID whose first groups are digits (49906431-0073-4447-…) is no card.
    (re.compile(r"(?<![\w-])\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}(?![\w-])"), "****-****-****-****"),
    (re.compile(r"\bAKIA[A-Z0-9]{16}\b"), "AKIA***"),
    (
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]*[A-Z])(?=[A-Za-z0-9/+=]*[a-z])(?=[A-Za-z0-9/+=]*\d)"
            r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
        ),
        "***",
    ),
)

_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "apikey",
        "authorization",
        "cookie",
        "setcookie",
        "session",
        "sessionid",
        "accesskey",
        "secretkey",
        "secretaccesskey",
        "clientsecret",
        "privatekey",
    }
)
_SECRET_SUFFIXES = ("password", "secret", "apikey")


def is_secret_key(key: str) -> bool:
    k = key.lower().replace("-", "").replace("_", "")
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def mask_text(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and is_secret_key(k) else mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value
