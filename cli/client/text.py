"""The client's own words in Japanese and English. Error messages are not here: the API renders them from
the error catalogue in the language the client asks for (Accept-Language)."""

from __future__ import annotations

from domain.enums import Language

_TEXTS: dict[str, tuple[str, str]] = {
    # key: (Japanese, English)
    "SUBGOAL_GENERATION": ("サブ目標", "subgoals"),
    "ACTION_GENERATION": ("アクション", "actions"),
    "TASK_GENERATION": ("タスク", "tasks"),
    "started": ("ジョブ {pid} を開始しました", "Started job {pid}"),
    "completed": ("完了しました", "Completed."),
    "show_hint": ("チャートを見る: mandala show {goal}", "See the chart: mandala show {goal}"),
    "retry_hint": ("リトライする: mandala jobs retry {pid}", "Retry it: mandala jobs retry {pid}"),
    "cancel_prompt": ("ジョブ {pid} をキャンセルしますか?", "Cancel job {pid}?"),
    "detached": (
        "ジョブは実行を続けています。再び追うには: mandala jobs show {pid} --watch",
        "The job keeps running. Follow it again with: mandala jobs show {pid} --watch",
    ),
    "waiting": ("待機", "waiting"),
    "no_jobs": ("ジョブはありません", "No jobs."),
    "page": ("{page}/{pages} ページ、全 {total} 件", "page {page} of {pages}, {total} in all"),
    "no_subgoals": ("まだサブ目標がありません", "No subgoals yet."),
    "minutes": ("{n}分", "{n} min"),
}


def t(key: str, lang: Language, **values: object) -> str:
    ja, en = _TEXTS[key]
    return (ja if lang is Language.JA else en).format(**values)
