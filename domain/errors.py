"""The error catalogue (spec section 7): the only list of error codes.

Each entry gives the HTTP status the API answers with, whether the client may retry, whether Temporal
retries the activity automatically, and the exact Japanese and English messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.enums import Language


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    INVALID_PROCESS_TYPE = "INVALID_PROCESS_TYPE"
    INVALID_UUID = "INVALID_UUID"
    PROMPT_INJECTION_DETECTED = "PROMPT_INJECTION_DETECTED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PROCESSING_NOT_FOUND = "PROCESSING_NOT_FOUND"
    GOAL_NOT_FOUND = "GOAL_NOT_FOUND"
    SUBGOAL_NOT_FOUND = "SUBGOAL_NOT_FOUND"
    ACTION_NOT_FOUND = "ACTION_NOT_FOUND"
    RETRY_NOT_ALLOWED = "RETRY_NOT_ALLOWED"
    MAX_RETRY_EXCEEDED = "MAX_RETRY_EXCEEDED"
    ALREADY_RETRIED = "ALREADY_RETRIED"
    CANCEL_NOT_ALLOWED = "CANCEL_NOT_ALLOWED"
    JOB_ALREADY_RUNNING = "JOB_ALREADY_RUNNING"
    TARGET_HAS_CHILDREN = "TARGET_HAS_CHILDREN"
    TARGET_NOT_READY = "TARGET_NOT_READY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    AI_ERROR = "AI_ERROR"
    AI_REQUEST_REJECTED = "AI_REQUEST_REJECTED"
    AI_RESPONSE_INVALID = "AI_RESPONSE_INVALID"
    QUALITY_ERROR = "QUALITY_ERROR"
    PARTIAL_FAILURE = "PARTIAL_FAILURE"
    DATABASE_ERROR = "DATABASE_ERROR"
    DATABASE_CONNECTION_ERROR = "DATABASE_CONNECTION_ERROR"
    TIMEOUT_ERROR = "TIMEOUT_ERROR"
    WORKFLOW_START_ERROR = "WORKFLOW_START_ERROR"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class InternalSignal(StrEnum):
    """Internal workflow signals: never stored, never returned (spec 6.3)."""

    STALE_RUN = "STALE_RUN"
    JOB_NOT_ACTIVE = "JOB_NOT_ACTIVE"


class InternalSignalError(Exception):
    """STALE_RUN or JOB_NOT_ACTIVE: the caller must stop and write nothing (spec 6.3).

    ``row_status``: the status of the row that refused the run, when it has ended (the run shows it to
    operators as its final ``ProcessingStatus``)."""

    def __init__(self, signal: InternalSignal, row_status: str | None = None) -> None:
        super().__init__(signal.value)
        self.signal = signal
        self.row_status = row_status


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    code: ErrorCode
    http_status: int
    retryable: bool
    auto_retry: bool
    ja: str
    en: str
    stored_on_job: bool = False

    def message(self, lang: Language) -> str:
        return self.en if lang is Language.EN else self.ja


def _e(
    code: ErrorCode, http: int, retryable: bool, auto: bool, ja: str, en: str, job: bool = False
) -> CatalogueEntry:
    return CatalogueEntry(code, http, retryable, auto, ja, en, job)


C = ErrorCode
CATALOGUE: dict[ErrorCode, CatalogueEntry] = {
    e.code: e
    for e in (
        _e(C.VALIDATION_ERROR, 400, False, False, "入力値が不正です", "The input values are invalid."),
        _e(
            C.INVALID_PROCESS_TYPE,
            400,
            False,
            False,
            "処理タイプが不正です。SUBGOAL_GENERATION、ACTION_GENERATION、TASK_GENERATIONのいずれかを指定してください",
            "Invalid processing type. Specify SUBGOAL_GENERATION, ACTION_GENERATION or TASK_GENERATION.",
        ),
        _e(C.INVALID_UUID, 400, False, False, "UUIDの形式が不正です", "The UUID format is invalid."),
        _e(
            C.PROMPT_INJECTION_DETECTED,
            400,
            False,
            False,
            "不正な入力が検出されました",
            "Invalid input was detected.",
            job=True,
        ),
        _e(
            C.PAYLOAD_TOO_LARGE,
            413,
            False,
            False,
            "リクエストのサイズが大きすぎます",
            "The request body is too large.",
        ),
        _e(
            C.UNAUTHORIZED,
            401,
            False,
            False,
            "認証が必要です。有効なJWTトークンを提供してください",
            "Authentication required. Please provide a valid JWT.",
        ),
        _e(
            C.TOKEN_EXPIRED,
            401,
            False,
            False,
            "トークンの有効期限が切れています。再ログインしてください",
            "The token has expired. Please log in again.",
        ),
        _e(
            C.FORBIDDEN,
            403,
            False,
            False,
            "この操作を実行する権限がありません",
            "You do not have permission to perform this operation.",
            job=True,
        ),
        _e(
            C.NOT_FOUND,
            404,
            False,
            False,
            "指定されたリソースが見つかりません",
            "The requested resource was not found.",
        ),
        _e(
            C.METHOD_NOT_ALLOWED,
            405,
            False,
            False,
            "このメソッドは許可されていません",
            "This method is not allowed.",
        ),
        _e(C.PROCESSING_NOT_FOUND, 404, False, False, "処理が見つかりません", "The process was not found."),
        _e(C.GOAL_NOT_FOUND, 404, False, False, "目標が見つかりません", "The goal was not found.", job=True),
        _e(
            C.SUBGOAL_NOT_FOUND,
            404,
            False,
            False,
            "サブ目標が見つかりません",
            "The subgoal was not found.",
            job=True,
        ),
        _e(
            C.ACTION_NOT_FOUND,
            404,
            False,
            False,
            "アクションが見つかりません",
            "The action was not found.",
            job=True,
        ),
        _e(
            C.RETRY_NOT_ALLOWED,
            400,
            False,
            False,
            "この状態の処理はリトライできません",
            "A process in this state cannot be retried.",
        ),
        _e(
            C.MAX_RETRY_EXCEEDED,
            400,
            False,
            False,
            "リトライ回数の上限（3回）を超えました。新しい処理として開始してください",
            "The retry limit (3) has been exceeded. Please start a new process.",
        ),
        _e(
            C.ALREADY_RETRIED,
            409,
            False,
            False,
            "この処理は既にリトライされています",
            "This process has already been retried.",
        ),
        _e(
            C.CANCEL_NOT_ALLOWED,
            400,
            False,
            False,
            "この状態の処理はキャンセルできません",
            "A process in this state cannot be cancelled.",
        ),
        _e(
            C.JOB_ALREADY_RUNNING,
            409,
            False,
            False,
            "同じ対象の処理が既に実行中です",
            "A process for the same target is already running.",
            job=True,
        ),
        _e(
            C.TARGET_HAS_CHILDREN,
            409,
            False,
            False,
            "対象には既に生成済みのデータがあります。置き換える場合は regenerate に true を指定してください",
            'The target already has generated items. Set "regenerate" to true to replace them.',
            job=True,
        ),
        _e(
            C.TARGET_NOT_READY,
            409,
            False,
            False,
            "生成対象がまだありません。先に上位の項目を生成してください",
            "There is nothing to generate for yet. Generate the parent items first.",
            job=True,
        ),
        _e(
            C.IDEMPOTENCY_KEY_REUSED,
            422,
            False,
            False,
            "このIdempotency-Keyは別の内容のリクエストで既に使用されています",
            "This Idempotency-Key has already been used for a different request.",
        ),
        _e(
            C.IDEMPOTENCY_KEY_IN_PROGRESS,
            409,
            True,
            False,
            "同じIdempotency-Keyのリクエストを処理中です。しばらく待ってから再試行してください",
            "A request with the same Idempotency-Key is still being processed. Please wait and try again.",
        ),
        _e(
            C.RATE_LIMIT_EXCEEDED,
            429,
            True,
            False,
            "リクエスト数が制限を超えました。しばらく待ってから再試行してください",
            "Too many requests. Please wait and try again.",
        ),
        _e(
            C.AI_ERROR,
            503,
            True,
            True,
            "AI生成に失敗しました。もう一度お試しください。",
            "AI generation failed. Please try again.",
            job=True,
        ),
        _e(
            C.AI_REQUEST_REJECTED,
            502,
            False,
            False,
            "AI生成サービスがリクエストを受け付けませんでした。サポートチームに連絡してください",
            "The AI service rejected the request. Please contact support.",
            job=True,
        ),
        _e(
            C.AI_RESPONSE_INVALID,
            502,
            True,
            False,
            "AIの応答が不正です。もう一度お試しください",
            "The AI response was invalid. Please try again.",
            job=True,
        ),
        _e(
            C.QUALITY_ERROR,
            422,
            True,
            False,
            "AI生成結果の品質が基準を満たしませんでした。もう一度お試しください。",
            "The AI output did not meet the quality criteria. Please try again.",
            job=True,
        ),
        _e(
            C.PARTIAL_FAILURE,
            500,
            True,
            False,
            "一部の項目の生成に失敗しました。リトライすると失敗した項目のみ再生成します",
            "Some items failed to generate. A retry regenerates only the failed items.",
            job=True,
        ),
        _e(
            C.DATABASE_ERROR,
            500,
            True,
            True,
            "データベースエラーが発生しました。しばらくしてからお試しください。",
            "A database error occurred. Please try again later.",
            job=True,
        ),
        _e(
            C.DATABASE_CONNECTION_ERROR,
            503,
            True,
            True,
            "データベースに接続できません。しばらく待ってから再試行してください",
            "Cannot connect to the database. Please wait and try again.",
            job=True,
        ),
        _e(
            C.TIMEOUT_ERROR,
            504,
            True,
            True,
            "処理時間が制限を超えました。もう一度お試しください。",
            "Processing exceeded the time limit. Please try again.",
            job=True,
        ),
        _e(
            C.WORKFLOW_START_ERROR,
            503,
            True,
            False,
            "処理の開始に失敗しました",
            "Failed to start processing.",
            job=True,
        ),
        _e(
            C.CANCELLED,
            409,
            False,
            False,
            "処理はキャンセルされました",
            "The process was cancelled.",
            job=True,
        ),
        _e(
            C.TERMINATED,
            409,
            False,
            False,
            "処理は管理者により強制終了されました",
            "The process was terminated by an operator.",
            job=True,
        ),
        _e(
            C.UNKNOWN_ERROR,
            500,
            False,
            False,
            "予期しないエラーが発生しました。しばらくしてからお試しください。",
            "An unexpected error occurred. Please try again later.",
            job=True,
        ),
        _e(
            C.INTERNAL_ERROR,
            500,
            True,
            False,
            "サーバーエラーが発生しました",
            "A server error occurred.",
        ),
    )
}

# Codes Temporal must never retry: everything whose "Auto" column is not "yes".
NON_RETRYABLE_CODES: tuple[str, ...] = tuple(
    [str(c) for c, e in CATALOGUE.items() if not e.auto_retry] + [str(s) for s in InternalSignal]
)


def entry(code: ErrorCode | str) -> CatalogueEntry:
    return CATALOGUE[ErrorCode(code)]


def is_catalogue_code(code: str) -> bool:
    return code in ErrorCode.__members__


class AppError(Exception):
    """An error that maps to one catalogue code; raised anywhere, rendered at the edge."""

    def __init__(
        self,
        code: ErrorCode,
        details: dict[str, Any] | None = None,
        *,
        internal: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code.value)
        self.code = code
        self.details = details
        self.internal = internal
        self.headers = headers or {}

    @property
    def entry(self) -> CatalogueEntry:
        return CATALOGUE[self.code]

    def stored(self) -> dict[str, Any]:
        """The JSON kept in processing_states.error (the message is rendered when read)."""
        out: dict[str, Any] = {"code": self.code.value, "retryable": self.entry.retryable}
        if self.details:
            out["details"] = self.details
        return out


def render_error(stored: dict[str, Any], lang: Language) -> dict[str, Any]:
    """Turn a stored error ``{code, retryable, details?}`` into the API shape with its message."""
    code = stored.get("code", ErrorCode.UNKNOWN_ERROR)
    cat = CATALOGUE.get(ErrorCode(code)) if is_catalogue_code(str(code)) else None
    out: dict[str, Any] = {
        "code": code,
        "message": cat.message(lang) if cat else CATALOGUE[ErrorCode.UNKNOWN_ERROR].message(lang),
        "retryable": bool(stored.get("retryable", cat.retryable if cat else False)),
    }
    if stored.get("details"):
        out["details"] = stored["details"]
    return out


def catalogue_markdown() -> str:
    """docs/error-codes.md, generated from the catalogue (a test keeps the file in step)."""
    lines = [
        "# Error codes",
        "",
        "Generated from `domain/errors.py` by `python -m domain.errors > docs/error-codes.md`; do not edit.",
        "",
        "HTTP is the status the API answers with. *job* codes are stored on the job and returned inside a",
        "200 status body. Retryable is the flag clients see; Auto says whether Temporal retries the",
        "activity.",
        "",
        "| Code | HTTP | Job | Retryable | Auto | Message (JP) | Message (EN) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in CATALOGUE.values():
        lines.append(
            f"| `{e.code.value}` | {e.http_status} | {'job' if e.stored_on_job else ''} | "
            f"{str(e.retryable).lower()} | {'yes' if e.auto_retry else 'no'} | {e.ja} | {e.en} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
