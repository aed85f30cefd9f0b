"""The admin page with 1,000 declared settings (examples/many_settings.py):
the server-side filter (a GET query string, no JavaScript) and the number of
database statements a render costs, through the test client; then, in real
headless Chromium against ``hypercorn -w 1``: typing narrows the list, a group
collapses and expands, an edit in a filtered view saves that setting and only
it, reset to default, and the filter form without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Quart
from sqlalchemy import event
from sqlalchemy.engine import Engine

from examples.many_settings import declarations
from harness import Deployment
from harness.browser import chromium, log_in
from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN
from tests.test_admin_browser import _require_browser
from tests.test_admin_page import logged_in, text_of

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

COUNT = 1000
SECRET_KEY = "scale-test-secret-key"


def _scale_app(database_url: str, count: int = COUNT) -> QuartWaffle:
    app = Quart(__name__)
    app.secret_key = SECRET_KEY
    app.config["WAFFLE_CONFS"] = declarations(count)
    return QuartWaffle(app, database_url=database_url, watchtype="none", admin_token=ADMIN_TOKEN)


def _listed(html: str) -> list[str]:
    return re.findall(r'<div class="setting[^"]*" data-key="([^"]+)"', html)


_COUNTING: ContextVar[bool] = ContextVar("counting", default=False)


@contextmanager
def _counted_statements() -> Iterator[list[str]]:
    """The SQL statements run by the code the block awaits (not by background
    tasks started before it, such as the fleet's heartbeat)."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        if _COUNTING.get():
            statements.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    token = _COUNTING.set(True)
    try:
        yield statements
    finally:
        _COUNTING.reset(token)
        event.remove(Engine, "before_cursor_execute", record)


async def test_filter_without_javascript_and_statements_per_render(tmp_path: Path) -> None:
    waffle = _scale_app(f"sqlite:///{tmp_path / 'scale.db'}")
    small = _scale_app(f"sqlite:///{tmp_path / 'small.db'}", count=10)
    assert waffle.app is not None
    assert small.app is not None
    async with waffle.app.test_app(), small.app.test_app():
        client = waffle.app.test_client()
        await logged_in(client)
        html = await text_of(await client.get("/waffle/"))
        assert len(_listed(html)) == COUNT
        assert 'id="filter-status" role="status" data-total="1000">Showing 1000 of 1000' in html
        assert html.count('<details class="group" open') == 20
        assert 'data-group="CACHE"' in html  # no declared group: the key's prefix

        # words must all appear, in any of key, description and group
        found = _listed(await text_of(await client.get("/waffle/?q=cache+timeout")))
        assert found
        assert all(k.startswith("CACHE_TIMEOUT_") for k in found)
        assert len(found) == 7
        by_description = _listed(await text_of(await client.get("/waffle/?q=share+of+traffic")))
        assert len(by_description) == 120
        assert all("_RATIO_" in k for k in by_description)
        billing = _listed(await text_of(await client.get("/waffle/?group=Billing")))
        assert len(billing) == 50
        assert all(k.startswith("BILLING_") for k in billing)
        restart = _listed(await text_of(await client.get("/waffle/?restart=1&group=DB")))
        assert restart == [f"DB_POOL_SIZE_{n}" for n in range(1, 7)]
        assert _listed(await text_of(await client.get("/waffle/?changed=1"))) == []

        await waffle.update({"SEARCH_RETRIES_2": 7, "CDN_MODE_1": "off"}, actor="test")
        changed = await text_of(await client.get("/waffle/?changed=1"))
        assert _listed(changed) == ["SEARCH_RETRIES_2", "CDN_MODE_1"]
        assert "Showing 2 of 1000 settings" in changed
        assert 'id="filter-clear"' in changed
        assert 'id="history-SEARCH_RETRIES_2"' in changed  # rollback is one click away

        # scheduled changes still due are listed, and marked on their settings
        assert 'id="schedule-empty"' in changed
        soon = datetime.now(UTC) + timedelta(hours=1)
        entry = await waffle.schedule(
            {"FEEDS_MODE_1": "manual"}, at=soon, until=soon + timedelta(hours=1), reason="night"
        )
        feeds = await text_of(await client.get("/waffle/?group=Feeds"))
        row = re.search(
            rf'<tr id="schedule-{entry.id}" data-state="pending">(.*?)</tr>', feeds, re.S
        )
        assert row is not None, feeds
        assert 'FEEDS_MODE_1 = "manual"' in row.group(1)
        assert "night" in row.group(1)
        assert f'href="#schedule-{entry.id}" class="scheduled" id="scheduled-FEEDS_MODE_1"' in feeds
        assert 'id="scheduled-FEEDS_MODE_2"' not in feeds

        # a render reads the worker's snapshot: 1,000 settings cost no more
        # statements than 10 (the session check, permissions, the fleet panel)
        small_client = small.app.test_client()
        await logged_in(small_client)
        with _counted_statements() as few:
            await small_client.get("/waffle/")
        with _counted_statements() as many:
            response = await client.get("/waffle/")
        assert response.status_code == 200
        assert few
        assert len(many) == len(few), (few, many)
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert "<script>" not in await text_of(response)  # CSP: no inline script


async def test_page_at_1000_settings_in_chromium(tmp_path: Path) -> None:
    _require_browser()

    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "none",
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": ADMIN_TOKEN,
        "QUART_SECRET_KEY": SECRET_KEY,
    }
    log = tmp_path / "hypercorn.log"
    async with Deployment(env, log, workers=1, app="examples.many_settings:app") as deployment:
        base = f"http://127.0.0.1:{deployment.port}/waffle/"
        async with chromium() as browser:
            await _search_collapse_edit_reset(browser, base)
            await _filter_and_save_without_javascript(browser, base)


async def _log_in(page: Page, base: str) -> None:
    from playwright.async_api import expect

    await log_in(page, base, ADMIN_TOKEN)
    await expect(page.locator("#settings-form")).to_be_visible()


async def _search_collapse_edit_reset(browser: Browser, base: str) -> None:
    from playwright.async_api import expect

    page = await browser.new_page()
    page.set_default_timeout(15_000)
    await _log_in(page, base)
    await page.wait_for_selector("#filter-form[data-filter-ready=true]")
    await expect(page.locator(".setting:visible")).to_have_count(COUNT)

    # typing narrows the list at once, without leaving the page ("/" goes to the search)
    await page.keyboard.press("/")
    await expect(page.locator("#filter-q")).to_be_focused()
    await page.keyboard.type("cdn")
    await expect(page.locator(".setting:visible")).to_have_count(50)
    await page.keyboard.press("Escape")
    await expect(page.locator(".setting:visible")).to_have_count(COUNT)
    await page.fill("#filter-q", "email retries")
    await expect(page.locator(".setting:visible")).to_have_count(6)
    await expect(page.locator("#filter-status")).to_have_text("Showing 6 of 1000 settings")
    await expect(page.locator("details.group:visible")).to_have_count(1)

    # a group collapses and expands with its summary
    email = page.locator("details.group[data-group=Email]")
    await email.locator("summary").click()
    await expect(page.locator("#value-EMAIL_RETRIES_2")).to_be_hidden()
    await email.locator("summary").click()
    await expect(page.locator("#value-EMAIL_RETRIES_2")).to_be_visible()

    # an edit in the filtered view saves that setting, and only it
    await page.fill("#value-EMAIL_RETRIES_2", "9")
    await page.wait_for_selector("#settings-form[data-review-ready=true]")
    await page.click("#save")
    await expect(page.locator("#review-rows tr")).to_have_count(1)
    await expect(page.locator("#review-rows tr[data-key=EMAIL_RETRIES_2]")).to_be_visible()
    async with page.expect_navigation():
        await page.click("#confirm")
    await expect(page.locator(".notice")).to_contain_text("Saved")
    assert "q=email+retries" in page.url  # back to the view it was saved from
    await expect(page.locator(".setting")).to_have_count(6)
    await expect(page.locator("#filter-q")).to_have_value("email retries")
    await page.goto(f"{base}?changed=1")
    await expect(page.locator(".setting")).to_have_count(1)
    await expect(page.locator("#value-EMAIL_RETRIES_2")).to_have_value("9")

    # reset to default, from the filtered view, which it leaves
    async with page.expect_navigation():
        await page.click("#reset-EMAIL_RETRIES_2")
    await expect(page.locator(".notice")).to_contain_text("Saved")
    assert "changed=1" in page.url
    await expect(page.locator(".setting")).to_have_count(0)
    await page.goto(f"{base}?q=EMAIL_RETRIES_2")
    await expect(page.locator("#value-EMAIL_RETRIES_2")).to_have_value("3")
    await expect(page.locator("#default-EMAIL_RETRIES_2")).to_be_visible()
    await page.close()


async def _filter_and_save_without_javascript(browser: Browser, base: str) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await _log_in(page, base)
    await page.fill("#filter-q", "pool size")
    await page.select_option("#filter-group", "QUEUE")
    async with page.expect_navigation():
        await page.click("#filter-apply")
    assert "q=pool+size" in page.url
    assert "group=QUEUE" in page.url
    await expect(page.locator(".setting")).to_have_count(6)
    await expect(page.locator("#filter-status")).to_contain_text("Showing 6 of 1000 settings")
    await expect(page.locator("#collapse-all")).to_be_hidden()  # needs the script

    # a save from the narrowed form writes the edited setting; the settings
    # the filter left out (booleans among them) are not touched
    await page.fill("#value-QUEUE_POOL_SIZE_1", "12")
    async with page.expect_navigation():
        await page.click("#save")
    await expect(page.locator(".notice")).to_contain_text("Saved")
    await expect(page.locator(".setting")).to_have_count(6)  # the same view
    await page.goto(f"{base}?changed=1")
    await expect(page.locator(".setting")).to_have_count(1)
    await expect(page.locator("#value-QUEUE_POOL_SIZE_1")).to_have_value("12")
    await context.close()
