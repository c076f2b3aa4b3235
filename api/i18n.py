"""Response language (spec 5.1): English when the first Accept-Language range starts with ``en``."""

from __future__ import annotations

from domain.enums import Language


def language_from(accept_language: str | None) -> Language:
    if not accept_language:
        return Language.JA
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return Language.EN if first.startswith("en") else Language.JA
