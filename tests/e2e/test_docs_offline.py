"""/docs in headless Chromium with every request off the API's own origin refused: Swagger UI renders all
operations from the app's own assets, with the bearer scheme, request bodies and catalogue errors."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import ConsoleMessage, Route, expect

from settings import Settings
from tests.support.browser import chromium
from tests.support.live_api import live_api

OPERATIONS = {
    "jobs": ["generate", "status", "retry", "cancel", "history", "events"],
    "goals": ["goal"],
    "health": ["health", "ready"],
}


def test_docs_render_every_operation_without_internet(make_settings: Callable[..., Settings]) -> None:
    refused: list[str] = []
    errors: list[str] = []
    with live_api(make_settings()) as base_url, chromium() as browser:

        def only_own_origin(route: Route) -> None:
            if route.request.url.startswith(base_url + "/"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page = browser.new_page()
        page.route("**/*", only_own_origin)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base_url}/docs")

        expect(page.locator(".opblock")).to_have_count(sum(len(ops) for ops in OPERATIONS.values()))
        for tag, operations in OPERATIONS.items():
            for operation in operations:
                expect(page.locator(f"#operations-{tag}-{operation}")).to_be_visible()
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()

        page.locator("#operations-jobs-generate .opblock-summary").click()
        generate = page.locator("#operations-jobs-generate")
        expect(generate.locator(".opblock-section-request-body")).to_be_visible()
        codes = generate.locator("tr.response").evaluate_all("rows => rows.map(r => r.dataset.code)")
        declared = httpx.get(f"{base_url}/openapi.json").json()["paths"]["/api/ai/async/generate"]["post"]
        assert codes == list(declared["responses"]) and "202" in codes
        expect(generate.get_by_text("TARGET_HAS_CHILDREN").first).to_be_attached()
    assert refused == []
    assert errors == []
