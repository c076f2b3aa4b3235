"""No string gets a 5xx (issue 6): property tests over arbitrary JSON strings, lone surrogates included,
in every text field, in keys, in the cancel reason and in the token claims the API stores."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import User
from domain.storable import escaped, has_lone_surrogate, is_storable
from settings import DEV_JWT_SECRET
from tests.support.api import bearer, field_messages

EDGE_CASES = ["\ud800", "\udfff", "a\udc00b", "\x00", "a\x00b", "\ud83d\ude00", "😀", "\u202e", "\ufeff", ""]
STRINGS = st.one_of(
    st.sampled_from(EDGE_CASES),
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates included
)
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CONTROL = re.compile("[\x00-\x1f]")
INVALID_CHARACTER = "使用できない文字が含まれています"


def subgoal_body() -> dict[str, Any]:
    deadline = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    params = {"title": "目標", "description": "説明", "deadline": deadline, "background": "背景"}
    return {"type": "SUBGOAL_GENERATION", "params": params}


def body_with(field: str, value: str) -> dict[str, Any]:
    """A valid start body with ``field`` (``type`` or ``params.<key>``) set to ``value``."""
    body = subgoal_body()
    if field == "type":
        body["type"] = value
        return body
    key = field.removeprefix("params.")
    if key in ("subGoalId", "actionId"):
        body = {"type": "ACTION_GENERATION" if key == "subGoalId" else "TASK_GENERATION", "params": {}}
    body["params"][key] = value
    return body


def post_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()  # "\ud800" travels as the JSON escape


def received(value: str) -> str:
    """What the server decodes: a surrogate *pair* in a Python str arrives as one character."""
    decoded: str = json.loads(json.dumps(value))
    return decoded


def assert_no_server_error(response: httpx.Response) -> dict[str, Any]:
    """Below 500, a JSON envelope in valid UTF-8, with no raw control character echoed back."""
    assert response.status_code < 500, response.text[:300]
    text = response.content.decode("utf-8")
    assert not CONTROL.search(text), text[:300]
    if response.is_redirect:  # "…/status/0%2F" is "…/status/0/": the router's trailing-slash redirect
        return {}
    body: dict[str, Any] = json.loads(text)
    return body


TEXT_FIELDS = [
    "type",
    "params.title",
    "params.description",
    "params.deadline",
    "params.background",
    "params.constraints",
    "params.goalId",
    "params.subGoalId",
    "params.actionId",
]


@PROPERTY
@given(field=st.sampled_from(TEXT_FIELDS), value=STRINGS)
async def test_any_string_in_any_text_field(
    api: httpx.AsyncClient, clean_db: AsyncEngine, field: str, value: str
) -> None:
    response = await api.post("/api/ai/async/generate", content=post_json(body_with(field, value)), **AUTH)
    body = assert_no_server_error(response)
    if has_lone_surrogate(received(value)):
        assert response.status_code == 400
        assert body["error"]["code"] == "VALIDATION_ERROR"
        assert field_messages(response) == {field: INVALID_CHARACTER}


# Keys a SUBGOAL body knows at either level (Hypothesis also tries string constants of the code under
# test, such as "goalId").
KNOWN_KEYS = {
    "type",
    "params",
    "title",
    "description",
    "deadline",
    "background",
    "constraints",
    "goalId",
    "regenerate",
}


@PROPERTY
@given(key=STRINGS.filter(lambda k: k not in KNOWN_KEYS), nested=st.booleans())
async def test_any_string_as_a_key(
    api: httpx.AsyncClient, clean_db: AsyncEngine, key: str, nested: bool
) -> None:
    body = subgoal_body()
    (body["params"] if nested else body)[key] = "x"
    response = await api.post("/api/ai/async/generate", content=post_json(body), **AUTH)
    error = assert_no_server_error(response)["error"]
    assert response.status_code == 400 and error["code"] == "VALIDATION_ERROR"
    key = received(key)
    label = f"params.{escaped(key)}" if nested else escaped(key)
    message = INVALID_CHARACTER if has_lone_surrogate(key) else "不明なフィールドです"
    assert field_messages(response) == {label: message}
    assert is_storable(label) and not CONTROL.search(label)


@PROPERTY
@given(reason=STRINGS)
async def test_any_string_as_the_cancel_reason(
    api: httpx.AsyncClient, clean_db: AsyncEngine, reason: str
) -> None:
    path = f"/api/ai/async/cancel/{uuid.uuid4()}"
    response = await api.post(path, content=post_json({"reason": reason}), **AUTH)
    body = assert_no_server_error(response)
    if has_lone_surrogate(received(reason)):
        assert response.status_code == 400
        assert field_messages(response) == {"reason": INVALID_CHARACTER}
    else:  # the body is fine (or too long / an injection): then the job does not exist
        assert body["error"]["code"] in {"PROCESSING_NOT_FOUND", "PROMPT_INJECTION_DETECTED"}


def token(claims: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    encoded = jwt.encode({"iat": now, "exp": now + 600, **claims}, DEV_JWT_SECRET, "HS256")
    return {"Authorization": f"Bearer {encoded}"}


async def stored_user(engine: AsyncEngine, subject: str, issuer: str) -> Any:
    async with engine.connect() as conn:
        stmt = select(User.email, User.name).where(User.subject == subject, User.issuer == issuer)
        return (await conn.execute(stmt)).one_or_none()


@PROPERTY
@given(claim=st.sampled_from(["sub", "iss"]), value=STRINGS)
async def test_any_string_as_the_identity_claims(
    api: httpx.AsyncClient, clean_db: AsyncEngine, claim: str, value: str
) -> None:
    claims = {"sub": f"user-{uuid.uuid4()}", claim: value}
    response = await api.get("/api/ai/async/history", headers=token(claims))
    body = assert_no_server_error(response)
    value = claims[claim] = received(value)
    if is_storable(value) and len(value) <= 255 and (claim == "iss" or value):
        assert response.status_code == 200
        assert await stored_user(clean_db, claims["sub"], claims.get("iss", "")) is not None
    else:
        assert response.status_code == 401 and body["error"]["code"] == "UNAUTHORIZED"


@PROPERTY
@given(email=STRINGS, name=STRINGS)
async def test_any_string_as_the_profile_claims(
    api: httpx.AsyncClient, clean_db: AsyncEngine, email: str, name: str
) -> None:
    subject = f"user-{uuid.uuid4()}"
    response = await api.get(
        "/api/ai/async/history", headers=token({"sub": subject, "email": email, "name": name})
    )
    assert_no_server_error(response)
    assert response.status_code == 200
    row = await stored_user(clean_db, subject, "")
    email, name = received(email), received(name)
    assert row.email == (email if is_storable(email) and len(email) <= 255 else None)
    assert row.name == (name if is_storable(name) and len(name) <= 100 else None)


AUTH: dict[str, Any] = {"headers": bearer("any-string-user")}


@PROPERTY
@given(value=STRINGS)
async def test_any_string_as_a_path_id_or_query_value(
    api: httpx.AsyncClient, clean_db: AsyncEngine, value: str
) -> None:
    quoted = quote(value, safe="", errors="surrogatepass")
    for path in (f"/api/ai/async/status/{quoted}", f"/api/goals/{quoted}"):
        assert_no_server_error(await api.get(path, **AUTH))
    for key in ("targetId", "type", "startDate", "page", "after"):
        assert_no_server_error(await api.get(f"/api/ai/async/history?{key}={quoted}", **AUTH))


async def test_a_uuid_with_a_trailing_line_break_is_no_uuid(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    pid = uuid.uuid4()
    response = await api.get(f"/api/ai/async/status/{pid}%0A", **AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_UUID"
    body = body_with("params.goalId", f"{pid}\n")
    response = await api.post("/api/ai/async/generate", content=post_json(body), **AUTH)
    assert field_messages(response) == {"params.goalId": "目標IDは有効なUUID形式である必要があります"}
