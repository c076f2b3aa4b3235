"""The catalogue is the only list of codes; its doc is generated from it."""

from __future__ import annotations

from pathlib import Path

from domain.enums import Language
from domain.errors import (
    CATALOGUE,
    NON_RETRYABLE_CODES,
    AppError,
    ErrorCode,
    catalogue_markdown,
    render_error,
)


def test_every_code_has_an_entry_with_both_languages() -> None:
    assert set(CATALOGUE) == set(ErrorCode)
    for e in CATALOGUE.values():
        assert e.ja and e.en and e.ja != e.en


def test_auto_retry_is_exactly_the_spec_list() -> None:
    auto = {c.value for c, e in CATALOGUE.items() if e.auto_retry}
    assert auto == {"AI_ERROR", "DATABASE_ERROR", "DATABASE_CONNECTION_ERROR", "TIMEOUT_ERROR"}
    assert "AI_ERROR" not in NON_RETRYABLE_CODES and "QUALITY_ERROR" in NON_RETRYABLE_CODES
    assert {"STALE_RUN", "JOB_NOT_ACTIVE"} <= set(NON_RETRYABLE_CODES)


def test_stored_error_renders_in_the_requested_language() -> None:
    stored = AppError(ErrorCode.QUALITY_ERROR, {"violations": [{"rule": "SG_COUNT"}]}).stored()
    assert stored == {
        "code": "QUALITY_ERROR",
        "retryable": True,
        "details": {"violations": [{"rule": "SG_COUNT"}]},
    }
    assert AppError(ErrorCode.CANCELLED).stored() == {"code": "CANCELLED", "retryable": False}
    ja = render_error({"code": "CANCELLED", "retryable": False}, Language.JA)
    assert ja == {"code": "CANCELLED", "message": "処理はキャンセルされました", "retryable": False}
    en = render_error(
        {"code": "TIMEOUT_ERROR", "retryable": True, "details": {"timeoutKind": "HEARTBEAT"}}, Language.EN
    )
    assert en["message"] == "Processing exceeded the time limit. Please try again."
    assert en["details"] == {"timeoutKind": "HEARTBEAT"}


def test_error_codes_doc_is_generated_from_the_catalogue() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "error-codes.md"
    assert doc.read_text(encoding="utf-8") == catalogue_markdown()
