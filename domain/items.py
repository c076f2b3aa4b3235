"""The API shape of generated items, shared by the job ``result`` (spec 3.8) and the goal tree (5.9).

Each function takes a database row (anything with the model's attributes) and never its children.
"""

from __future__ import annotations

from typing import Any

from domain.timefmt import iso_ms


def stamps(row: Any) -> dict[str, str]:
    return {"createdAt": iso_ms(row.created_at), "updatedAt": iso_ms(row.updated_at)}


def _head(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "title": row.title, "description": row.description}


def subgoal_item(row: Any) -> dict[str, Any]:
    return (
        _head(row)
        | {"background": row.background, "position": row.position, "progress": row.progress}
        | stamps(row)
    )


def action_item(row: Any) -> dict[str, Any]:
    return (
        _head(row)
        | {
            "background": row.background,
            "type": str(row.type),
            "position": row.position,
            "progress": row.progress,
        }
        | stamps(row)
    )


def task_item(row: Any) -> dict[str, Any]:
    return (
        _head(row)
        | {
            "type": str(row.type),
            "status": str(row.status),
            "estimatedMinutes": row.estimated_minutes,
            "priority": str(row.priority),
            "position": row.position,
            "dependsOn": list(row.depends_on),
        }
        | stamps(row)
    )
