"""Where the client finds the API and the token, and which language it speaks.

Flags win over the environment: ``--api-url`` / ``MANDALA_API_URL`` (default http://127.0.0.1:8000) and
``--token`` / ``MANDALA_TOKEN`` (the output of ``mandala token`` as it is). The language is Japanese when the
locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, in that order) starts with ``ja``, else English.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from domain.enums import Language

DEFAULT_API_URL = "http://127.0.0.1:8000"
_LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


class ConfigError(Exception):
    """The client cannot run: no token, or an unusable API URL."""


@dataclass(frozen=True, slots=True)
class Connection:
    api_url: str
    token: str
    lang: Language


def user_language(environ: Mapping[str, str]) -> Language:
    for name in _LOCALE_VARIABLES:
        value = environ.get(name)
        if value:
            return Language.JA if value.lower().startswith("ja") else Language.EN
    return Language.EN


def connection(api_url: str | None, token: str | None, environ: Mapping[str, str] = os.environ) -> Connection:
    url = (api_url or environ.get("MANDALA_API_URL") or DEFAULT_API_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"the API URL must start with http:// or https://, got {url!r}")
    raw = (token or environ.get("MANDALA_TOKEN") or "").strip()
    scheme, _, rest = raw.partition(" ")
    bearer = rest.strip() if scheme.lower() == "bearer" else raw
    if not bearer:
        raise ConfigError(
            "no token: pass --token or set MANDALA_TOKEN, "
            "for example: export MANDALA_TOKEN=$(mandala token --sub demo-user)"
        )
    return Connection(url, bearer, user_language(environ))
