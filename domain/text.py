"""The one text normalisation pipeline (spec 4.2) and injection detector (spec 4.3).

Request fields, context text and every string of AI output go through this module and nothing else.
Detection runs on the NFC text *before* anything is stripped (stripping first would remove the markers
some patterns need), and again on the stripped result so that markup cannot hide a pattern
(``ig<b></b>nore previous instructions``) that would otherwise reach a prompt intact. Nothing is ever
truncated.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


class NotAString(TypeError):
    """Step 1 of the pipeline: the value is not a (JSON) string."""

    def __init__(self) -> None:
        super().__init__("value must be a string")


class InjectionDetected(Exception):
    """A prompt-injection pattern matched; carries the pattern id, never the text."""

    def __init__(self, pattern_id: str) -> None:
        super().__init__(pattern_id)
        self.pattern_id = pattern_id


_INJECTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("IGNORE_PREVIOUS", re.compile(r"ignore (all )?(the )?previous instructions")),
    ("DISREGARD", re.compile(r"disregard (all )?(the )?previous instructions|disregard all")),
    ("FORGET", re.compile(r"forget everything")),
    ("OVERRIDE", re.compile(r"override (your |the )?instructions")),
    ("ROLE_PREFIX", re.compile(r"^ *(system|assistant) *:", re.MULTILINE)),
    ("INST_TAGS", re.compile(r"\[/?inst\]|\[system\]|\[assistant\]")),
    ("SPECIAL_TOKENS", re.compile(r"<\|[^\W\d]+\|>")),
    ("TEMPLATE_SYSTEM", re.compile(r"\{\{.*?system.*?\}\}", re.DOTALL)),
    ("JP_IGNORE", re.compile(r"(以前|これまで|上記|前)の(指示|命令)を(すべて|全て)?無視")),
)

# Folding keeps line breaks (ROLE_PREFIX is anchored to them), so every line-break form becomes LF first.
_FOLD_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
_FOLD_REMOVED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x84\x86-\x9f\u200b-\u200d\u2060\ufeff]")
_FOLD_BLANKS = re.compile("[ \t]+")

_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_HTML_TAG = re.compile(r"<[^>]*>")
_BRACKETS = re.compile(r"[<>{}]")


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text)
    folded = _FOLD_LINE_BREAKS.sub("\n", folded)
    folded = _FOLD_REMOVED.sub("", folded).casefold()
    return _FOLD_BLANKS.sub(" ", folded)


def detect_injection(text: str) -> str | None:
    """The id of the first pattern (in spec table order) found in the folded text, else None."""
    folded = _fold(text)
    for pattern_id, pattern in _INJECTION_PATTERNS:
        if pattern.search(folded):
            return pattern_id
    return None


def _strip(nfc_text: str) -> str:
    """Steps 4-6 on text that is already NFC."""
    text = nfc_text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROLS.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _BRACKETS.sub("", text)
    return text.strip()


def _nfc(value: object) -> str:
    if not isinstance(value, str):
        raise NotAString()
    return unicodedata.normalize("NFC", value)


def normalize_text(value: object) -> str:
    """Steps 1, 2 and 4-6: type check, NFC, control/zero-width/markup removal, trim. No detection."""
    return _strip(_nfc(value))


@dataclass(frozen=True, slots=True)
class CleanedText:
    text: str
    pattern_id: str | None


def clean_text(value: object) -> CleanedText:
    """Steps 1-6 without raising on a match: the normalised text and the detected pattern id, if any."""
    nfc = _nfc(value)
    text = _strip(nfc)
    return CleanedText(text, detect_injection(nfc) or detect_injection(text))


def sanitize_field(value: object) -> str:
    """Steps 1-6 for a request or context field; raises InjectionDetected or NotAString."""
    cleaned = clean_text(value)
    if cleaned.pattern_id is not None:
        raise InjectionDetected(cleaned.pattern_id)
    return cleaned.text


def code_points(text: str) -> int:
    """Length as the spec counts it: Unicode code points (an emoji is 1, not 2 as in UTF-16)."""
    return len(text)
