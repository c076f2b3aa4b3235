"""Each room of docs/architecture.md imports only the rooms its table allows (e.g. ``db`` never imports
``ai``); imports inside functions count too."""

from __future__ import annotations

import ast

import pytest

from tests.support.servers import REPO_ROOT

FIRST_PARTY = {
    "domain",
    "workflows",
    "activities",
    "db",
    "ai",
    "api",
    "observability",
    "cli",
    "settings",
    "worker",
    "worker_shutdown",
    "temporal_client",
}
ALLOWED = {
    "domain": {"domain"},
    "workflows": {"domain"},
    "db": {"domain", "observability", "settings"},
    "ai": {"domain", "observability", "settings"},
    "observability": {"domain", "settings"},
    "api": {"db", "domain", "observability", "settings", "temporal_client"},
    "activities": {"ai", "db", "domain", "observability", "settings"},
    "temporal_client": {"settings"},
    "worker_shutdown": set(),
}


def imported_rooms(room: str) -> dict[str, set[str]]:
    """The first-party rooms other than ``room`` that each of its modules imports."""
    found: dict[str, set[str]] = {}
    single = REPO_ROOT / f"{room}.py"
    for path in [single] if single.is_file() else sorted((REPO_ROOT / room).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO_ROOT))] = {name.split(".")[0] for name in names} & FIRST_PARTY - {
            room
        }
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_what_the_room_table_allows(room: str) -> None:
    found = imported_rooms(room)
    assert len(found) > (0 if (REPO_ROOT / f"{room}.py").is_file() else 1), f"no modules found for {room}"
    offending = {module: rooms - ALLOWED[room] for module, rooms in found.items() if rooms - ALLOWED[room]}
    assert offending == {}
