"""Schema and persistence rules enforced by PostgreSQL itself (spec 2, checklist A1–A9)."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.postgres import EmbeddedPostgres
from db.migrate import downgrade_base, upgrade_head
from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from tests.support.jobs import Jobs, make_user
from tests.support.servers import free_port, server_dir

EXPECTED_TABLES = {
    "users",
    "goals",
    "sub_goals",
    "actions",
    "tasks",
    "processing_states",
    "processing_units",
    "processing_events",
    "rate_limit_windows",
    "idempotency_keys",
}


def test_upgrade_creates_everything_and_downgrade_removes_it() -> None:
    data = server_dir()
    server = EmbeddedPostgres(data, port=free_port())
    server.start()
    try:
        server.create_database("migrations")
        url = server.url("migrations")
        upgrade_head(url)
        eng = create_engine(url)
        insp = inspect(eng)
        assert EXPECTED_TABLES <= set(insp.get_table_names())
        ps_indexes = {i["name"] for i in insp.get_indexes("processing_states")}
        assert {
            "ix_ps_user_created",
            "ix_ps_status_created",
            "ix_ps_type_status",
            "uq_ps_active_target",
            "uq_ps_parent",
            "ix_ps_root",
            "ix_ps_completed",
        } <= ps_indexes
        assert {i["name"] for i in insp.get_indexes("idempotency_keys")} == {"ix_idempotency_keys_created_at"}
        assert insp.get_pk_constraint("idempotency_keys")["constrained_columns"] == ["user_id", "key"]
        with eng.connect() as conn:
            enums = set(conn.execute(text("SELECT typname FROM pg_type WHERE typtype='e'")).scalars())
        assert {
            "processing_type",
            "processing_status",
            "target_type",
            "unit_status",
            "task_priority",
        } <= enums
        downgrade_base(url)
        insp = inspect(eng)
        assert not (EXPECTED_TABLES & set(insp.get_table_names()))
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_type WHERE typtype='e'")).scalar_one() == 0
        eng.dispose()
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


def _job_row(user_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    pid = uuid.uuid4()
    row: dict[str, Any] = {
        "id": pid,
        "user_id": user_id,
        "type": "SUBGOAL_GENERATION",
        "status": "PENDING",
        "target_type": "GOAL",
        "target_id": uuid.uuid4(),
        "params": "{}",
        "progress": 0,
        "retry_count": 0,
        "root_process_id": pid,
        "workflow_id": f"ai-gen-{pid}",
        "estimated_completion_at": datetime.now(UTC),
        "completed_at": None,
        "parent_process_id": None,
    }
    row.update(overrides)
    return row


async def _insert(engine: AsyncEngine, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    vals = ", ".join(
        f"CAST(:{k} AS {t})"
        if (
            t := {
                "type": "processing_type",
                "status": "processing_status",
                "target_type": "target_type",
                "params": "jsonb",
            }.get(k)
        )
        else f":{k}"
        for k in row
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO processing_states ({cols}) VALUES ({vals})"), row)


NOW = datetime.now(UTC)
SUBGOAL_INSERT = (
    "INSERT INTO sub_goals (id, goal_id, title, description, position) VALUES (:i, :g, 's', 'd', :pos)"
)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "UNKNOWN_GENERATION"},
        {"status": "RUNNING"},
        {"progress": 101},
        {"progress": -1},
        {"retry_count": 4},
        {"status": "COMPLETED", "progress": 99, "completed_at": NOW},
        {"status": "FAILED", "progress": 100, "completed_at": NOW},
        {"status": "FAILED", "completed_at": None},
        {"status": "PROCESSING", "completed_at": NOW},
    ],
)
async def test_database_rejects_invalid_job_rows(clean_db: AsyncEngine, overrides: dict[str, Any]) -> None:
    user = await make_user(clean_db)
    with pytest.raises(sa_exc.DBAPIError):
        await _insert(clean_db, _job_row(user, **overrides))


async def test_one_active_job_per_target_and_one_child_per_parent(clean_db: AsyncEngine) -> None:
    user = await make_user(clean_db)
    target = uuid.uuid4()
    await _insert(clean_db, _job_row(user, target_id=target, status="FAILED", completed_at=NOW))
    await _insert(clean_db, _job_row(user, target_id=target))
    with pytest.raises(sa_exc.IntegrityError):
        await _insert(clean_db, _job_row(user, target_id=target, status="PROCESSING"))
    parent = _job_row(user, status="FAILED", completed_at=NOW)
    await _insert(clean_db, parent)
    await _insert(clean_db, _job_row(user, parent_process_id=parent["id"], status="FAILED", completed_at=NOW))
    with pytest.raises(sa_exc.IntegrityError):
        await _insert(clean_db, _job_row(user, parent_process_id=parent["id"]))


async def test_positions_are_checked_and_goal_delete_cascades(clean_db: AsyncEngine) -> None:
    user = await make_user(clean_db)
    goal = uuid.uuid4()
    async with clean_db.begin() as conn:
        await conn.execute(
            text("INSERT INTO goals (id, user_id, title) VALUES (:g, :u, 't')"), {"g": goal, "u": user}
        )
    for bad in (8, -1):
        with pytest.raises(sa_exc.IntegrityError):
            async with clean_db.begin() as conn:
                await conn.execute(
                    text(SUBGOAL_INSERT.replace(":pos", ":p")),
                    {"i": uuid.uuid4(), "g": goal, "p": bad},
                )
    sub = uuid.uuid4()
    async with clean_db.begin() as conn:
        await conn.execute(
            text(SUBGOAL_INSERT.replace(":pos", "0")),
            {"i": sub, "g": goal},
        )
    with pytest.raises(sa_exc.IntegrityError):
        async with clean_db.begin() as conn:
            await conn.execute(
                text(SUBGOAL_INSERT.replace(":pos", "0")),
                {"i": uuid.uuid4(), "g": goal},
            )
    action = uuid.uuid4()
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO actions (id, sub_goal_id, title, description, position) VALUES (:i,:s,'a','d',0)"
            ),
            {"i": action, "s": sub},
        )
        await conn.execute(
            text(
                "INSERT INTO tasks (id, action_id, title, type, estimated_minutes, position)"
                " VALUES (:i,:a,'t','EXECUTION',45,0)"
            ),
            {"i": uuid.uuid4(), "a": action},
        )
    with pytest.raises(sa_exc.IntegrityError):
        async with clean_db.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO tasks (id, action_id, title, type, estimated_minutes, position)"
                    " VALUES (:i,:a,'t','EXECUTION',45,0)"
                ),
                {"i": uuid.uuid4(), "a": action},
            )
    async with clean_db.begin() as conn:
        await conn.execute(text("DELETE FROM goals WHERE id=:g"), {"g": goal})
        left = await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM sub_goals) + (SELECT count(*) FROM actions)"
                " + (SELECT count(*) FROM tasks)"
            )
        )
        assert left.scalar_one() == 0


async def test_transitions_bump_updated_at_and_keep_seq_gap_free(repo: JobRepository) -> None:
    user = await make_user(repo.engine)
    pid = await Jobs(repo).pending(
        user,
        ProcessingType.SUBGOAL_GENERATION,
        TargetType.GOAL,
        params={"title": "x"},
        created_at=datetime.now(UTC) - timedelta(seconds=5),
    )
    before = await repo.get_job(pid)
    cancelled = await repo.cancel_by_user(pid, "ユーザーによるキャンセル")
    assert cancelled is not None
    row, previous = cancelled
    assert previous == "PENDING" and row.status == "CANCELLED"
    assert before is not None and row.updated_at > before.updated_at and row.completed_at is not None
    assert await repo.cancel_by_user(pid, "again") is None  # terminal rows refuse further transitions
    await repo.fail_start(pid, "late start failure")
    after = await repo.get_job(pid)
    assert after is not None and after.status == "CANCELLED"
    async with repo.engine.connect() as conn:
        seqs = (
            (
                await conn.execute(
                    text("SELECT seq FROM processing_events WHERE process_id=:p ORDER BY seq"), {"p": pid}
                )
            )
            .scalars()
            .all()
        )
    assert list(seqs) == [1, 2]

    # deleting the job removes its events and units and detaches its children
    async with repo.engine.begin() as conn:
        await conn.execute(text("DELETE FROM processing_states WHERE id=:p"), {"p": pid})
        left = await conn.execute(
            text("SELECT (SELECT count(*) FROM processing_events) + (SELECT count(*) FROM processing_units)")
        )
        assert left.scalar_one() == 0
