"""The page at / and the development sign-in: on only with the public development secret."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from api.routes.page import CONTENT_SECURITY_POLICY
from settings import Settings
from tests.support.api import assert_error, field_messages, serve


async def test_the_page_and_its_assets_are_served_with_a_strict_policy(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert 'data-dev-tokens="on"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from another origin
    script = await api.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


async def test_a_minted_development_token_is_accepted_by_the_api(api: httpx.AsyncClient) -> None:
    minted = await api.post("/api/dev/token", json={"sub": "alice"})
    assert minted.status_code == 200, minted.text
    data = minted.json()["data"]
    assert (data["sub"], data["expiresIn"]) == ("alice", 3600)
    history = await api.get("/api/ai/async/history", headers={"Authorization": f"Bearer {data['token']}"})
    assert history.status_code == 200
    default = await api.post("/api/dev/token")
    assert default.json()["data"]["sub"] == "demo-user"


async def test_a_bad_subject_is_a_validation_error_in_the_callers_language(api: httpx.AsyncClient) -> None:
    for body in ({"sub": ""}, {"sub": 7}, {"sub": "a" * 256}, {"sub": "a", "admin": True}):
        response = await api.post("/api/dev/token", json=body, headers={"Accept-Language": "en"})
        assert_error(response, 400, "VALIDATION_ERROR")
        assert field_messages(response) == {"sub": "sub must be a string of 1 to 255 characters."}


async def test_with_a_real_secret_there_is_no_minting_and_the_page_only_takes_a_pasted_token(
    clean_db: object, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(jwt_secret="a-real-secret-" + "x" * 40)) as http:
        page = await http.get("/")
        assert 'data-dev-tokens="off"' in page.text
        assert_error(await http.post("/api/dev/token", json={"sub": "alice"}), 404, "NOT_FOUND")
