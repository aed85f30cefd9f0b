"""The schedule part of the admin page in a real browser (the system's
headless Chromium through Playwright) against ``hypercorn -w 2
examples.app:app`` on SQLite: a temporary change scheduled from the page is
listed on the schedule page and on the settings page, a value out of bounds
is refused with the reason, the change is cancelled, after which it is listed
as cancelled and no longer due anywhere; the store holds the cancelled entry
and nothing was applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import Deployment
from harness.browser import chromium, log_in
from tests.helpers import make_waffle
from tests.test_admin_browser import _require_browser

TOKEN = "schedule-browser-token-0123456789"


async def test_schedule_and_cancel_from_the_page(tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import expect

    database_url = f"sqlite:///{tmp_path / 'waffle.db'}"
    env = {
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "QUART_SECRET_KEY": "schedule-browser-secret-key",
    }
    # an hour away: nothing falls due while the test runs, however slow the machine
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    until = at + timedelta(hours=1)
    async with Deployment(env, tmp_path / "hypercorn.log", workers=2) as deployment:
        base = f"http://127.0.0.1:{deployment.port}/waffle"
        async with chromium() as browser:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await log_in(page, f"{base}/", TOKEN)
            await expect(page.locator("#schedule-empty")).to_be_visible()
            async with page.expect_navigation():
                await page.click("#schedule-page")
            await expect(page.locator("#schedule-none")).to_be_visible()

            async def schedule(values: str) -> None:
                await page.fill("textarea[name=values]", values)
                await page.fill("input[name=at]", at.isoformat())
                await page.fill("input[name=until]", until.isoformat())
                await page.fill("input[name=reason]", "night maintenance")
                async with page.expect_navigation():
                    await page.click("#schedule-submit")

            # out of bounds: refused with the key and the reason, nothing stored
            await schedule("MAX_ITEMS=0\nTHEME=dark")
            await expect(page.locator("#schedule-problem")).to_contain_text(
                "MAX_ITEMS: must be at least 1"
            )
            await expect(page.locator("#schedule-none")).to_be_visible()

            await schedule("MAX_ITEMS=33\nTHEME=dark")
            await expect(page.locator("#schedule-added")).to_contain_text("Scheduled change 1")
            row = page.locator("#schedule-1")
            await expect(row).to_have_attribute("data-state", "pending")
            await expect(row).to_contain_text("MAX_ITEMS = 33")
            await expect(row).to_contain_text('THEME = "dark"')
            await expect(row).to_contain_text(at.isoformat())
            await expect(row).to_contain_text(until.isoformat())
            await expect(row).to_contain_text("night maintenance")

            # the settings page lists it as due, and marks the keys it changes
            await page.goto(f"{base}/")
            await expect(page.locator("#schedule #schedule-1")).to_contain_text("to be written")
            await expect(page.locator("#scheduled-MAX_ITEMS")).to_be_visible()
            await expect(page.locator("#scheduled-THEME")).to_be_visible()
            await expect(page.locator("#value-MAX_ITEMS")).to_have_value("20")

            await page.goto(f"{base}/schedule")
            async with page.expect_navigation():
                await page.click("#cancel-1")
            await expect(page.locator("#schedule-1")).to_have_attribute("data-state", "cancelled")
            await expect(page.locator("#cancel-1")).to_have_count(0)

            await page.goto(f"{base}/")
            await expect(page.locator("#schedule-empty")).to_be_visible()
            await expect(page.locator("#schedule #schedule-1")).to_have_count(0)
            await expect(page.locator("#scheduled-MAX_ITEMS")).to_have_count(0)
            await expect(page.locator("#value-MAX_ITEMS")).to_have_value("20")
            await expect(page.locator("#value-THEME")).to_have_value("light")

        served = await deployment.sample()
        assert {(answer["revision"], answer["settings"]["MAX_ITEMS"]) for answer in served} == {
            (0, 20)
        }

    store = make_waffle(database_url)
    async with store.connected():
        [entry] = await store.scheduled()
        assert (entry.id, entry.state, entry.values) == (
            1,
            "cancelled",
            {"MAX_ITEMS": 33, "THEME": "dark"},
        )
        assert (entry.at, entry.until, entry.reason) == (at, until, "night maintenance")
        assert store.revision == 0
        assert await store.history() == []
        assert (store.get("MAX_ITEMS"), store.get("THEME")) == (20, "light")
