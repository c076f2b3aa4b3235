"""The web page at / in headless Chromium against the API and worker processes: a full chart from the form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.support.browser import chromium
from tests.support.chart_reader import expected_cells
from tests.support.live_stack import LiveStack
from tests.support.pictures import picture_path

JOB_TIMEOUT_MS = 90_000


def fill_goal_form(page: Page, title: str = "TypeScriptのエキスパートになる") -> None:
    page.get_by_label("目標", exact=True).fill(title)
    page.get_by_label("説明").fill("型システムと設計を深く理解し、チームで指導できる水準になる")
    page.get_by_label("達成期限").fill("2031-12-31")
    page.get_by_label("背景").fill("フロントエンド開発を3年担当している")
    page.get_by_label("制約事項（任意）").fill("平日は1日1時間まで")


def drawn_cells(page: Page) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        "#chart tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => (c.querySelector('.title')?.textContent ?? '')))",
    )
    return [["".join(text.split()) for text in row] for row in rows]


def test_the_page_signs_in_builds_a_whole_chart_live_and_draws_the_9x9_grid(
    stack: LiveStack, tmp_path: Path
) -> None:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    with chromium() as browser:
        context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{stack.api_url}/")
        expect(page.get_by_role("heading", name="目標マンダラ")).to_be_visible()

        subject = page.get_by_label("ユーザーID")
        subject.fill("web-user")
        subject.press("Enter")  # the keyboard signs in
        expect(page.get_by_text("web-user としてサインイン中")).to_be_visible()

        fill_goal_form(page)
        page.get_by_role("button", name="生成する").click()
        expect(page.locator("#job-status")).to_have_text("PROCESSING", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-type")).to_have_text("タスク", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-message")).to_have_text("完了しました。")

        goal_id = page.get_attribute("#chart", "data-goal-id")
        assert goal_id
        tree = _goal(stack, page, goal_id)
        assert drawn_cells(page) == expected_cells(tree)
        expect(page.locator("#history .badge.COMPLETED")).to_have_count(3)

        page.locator("#chart td.action button").first.click()
        expect(page.locator("#tasks li").first).to_be_visible()

        page.screenshot(path=str(picture_path("web-chart.png", tmp_path)), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "the page scrolls sideways at phone width"
        context.close()
    assert errors == []


def _goal(stack: LiveStack, page: Page, goal_id: str) -> dict[str, Any]:
    token = page.evaluate("() => sessionStorage.getItem('mandala-token')")
    response = httpx.get(
        f"{stack.api_url}/api/goals/{goal_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    goal: dict[str, Any] = response.json()["data"]["goal"]
    return goal


def test_an_english_browser_gets_english_and_a_pasted_token_signs_in(stack: LiveStack) -> None:
    with chromium() as browser:
        page = browser.new_page(locale="en-US")
        page.goto(f"{stack.api_url}/")
        expect(page.get_by_role("heading", name="Goal mandala")).to_be_visible()
        page.get_by_label("Token (the output of mandala token)").fill(stack.token("pasted-user"))
        page.get_by_role("button", name="Use this token").click()
        expect(page.get_by_text("Signed in as pasted-user")).to_be_visible()
        expect(page.get_by_text("No jobs yet.")).to_be_visible()


def test_the_page_cancels_a_running_job_and_retries_a_failed_one(stack: LiveStack) -> None:
    errors: list[str] = []
    with chromium() as browser:
        page = browser.new_page(locale="ja-JP")
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{stack.api_url}/")
        page.get_by_label("ユーザーID").fill("web-cancel-user")
        page.get_by_role("button", name="開発用トークンでサインイン").click()

        fill_goal_form(page, "#fault:subgoal:hang 止まる目標")
        page.get_by_label("サブ目標", exact=True).check()
        page.get_by_role("button", name="生成する").click()
        expect(page.locator("#job-status")).to_have_text("PROCESSING", timeout=JOB_TIMEOUT_MS)
        page.get_by_role("button", name="キャンセル").click()
        expect(page.locator("#job-status")).to_have_text("CANCELLED", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-message")).to_have_text("処理はキャンセルされました (CANCELLED)")

        fill_goal_form(page, "#fault:subgoal:bad_quality:3 品質の目標")
        page.get_by_role("button", name="生成する").click()
        expect(page.locator("#job-status")).to_have_text("FAILED", timeout=JOB_TIMEOUT_MS)
        page.get_by_role("button", name="リトライ").click()
        expect(page.locator("#history .badge")).to_have_count(3, timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-status")).to_have_text("FAILED", timeout=JOB_TIMEOUT_MS)
        expect(page.locator("#job-message")).to_contain_text("(QUALITY_ERROR)")
        expect(page.get_by_role("button", name="キャンセル")).to_be_hidden()
    assert errors == []
