"""Text PostgreSQL can store, and safe labels for text it cannot (issue 6: no 5xx for any string).

JSON may carry ``\\ud800``: a lone UTF-16 surrogate, which is not a Unicode scalar value, cannot be
encoded as UTF-8 and so reaches neither PostgreSQL nor a response body. ``U+0000`` is valid Unicode but
neither ``text`` nor ``jsonb`` accepts it. The request text fields remove it in normalisation (spec 4.2
step 4); values stored as given (token claims) must not hold it.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def is_storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text`` as it is (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def escaped(text: str) -> str:
    """``text`` with control characters and lone surrogates written as ``\\uXXXX``: safe to echo or log."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def surrogate_paths(value: Any, path: str = "") -> list[str]:
    """The dotted paths (``params.title``, ``params.tags[2]``) of the keys and strings of a parsed JSON
    value that hold a lone surrogate; a bad key is named by its escaped form."""
    if isinstance(value, str):
        return [path or "body"] if has_lone_surrogate(value) else []
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in surrogate_paths(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        found: list[str] = []
        for key, item in value.items():
            child = f"{path}.{escaped(key)}" if path else escaped(key)
            found += [child] if has_lone_surrogate(key) else surrogate_paths(item, child)
        return found
    return []
