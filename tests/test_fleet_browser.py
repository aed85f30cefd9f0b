"""The admin page's fleet panel in real headless Chromium: two servers as two
hosts on one SQLite file and watcher file; the panel lists the three workers,
a save says how many applied it, and a worker of the other host paused with
SIGSTOP turns up lagging (highlighted) without a reload, then recovers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import Deployment
from harness.browser import chromium, log_in
from tests.test_admin_browser import _require_browser

TOKEN = "fleet-browser-token-0123456789"


def host_env(tmp_path: Path, host: str) -> dict[str, str]:
    return {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "WAFFLE_HOST_ID": host,
        "WAFFLE_HEARTBEAT_INTERVAL": "0.5",
        "QUART_SECRET_KEY": "fleet-browser-secret-key",
    }


async def test_fleet_panel_in_a_browser(tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import expect

    web = Deployment(host_env(tmp_path, "web-1"), tmp_path / "web-1.log", workers=2)
    other = Deployment(host_env(tmp_path, "web-2"), tmp_path / "web-2.log", workers=1)
    async with web, other:
        (paused,) = await other.worker_pids()
        async with chromium() as browser:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await log_in(page, f"http://127.0.0.1:{web.port}/waffle/", TOKEN)
            rows = page.locator("#fleet-rows tr")
            await expect(rows).to_have_count(3)
            await expect(page.locator("#fleet-rows tr[data-state=ok]")).to_have_count(3)
            await expect(page.locator("#fleet-rows tr[data-host=web-2]")).to_have_count(1)

            await page.fill("#value-GREETING", "Hello, fleet")
            await page.wait_for_selector("#settings-form[data-review-ready=true]")
            await page.click("#save")
            async with page.expect_navigation():
                await page.click("#confirm")
            await expect(page.locator(".notice")).to_contain_text("Applied by 3 of 3 workers in")

            os.kill(paused, signal.SIGSTOP)
            try:
                lagging = page.locator(f"#fleet-rows tr.worker-lagging[data-pid='{paused}']")
                await expect(lagging).to_have_count(1)  # no reload: the panel polls
                await expect(lagging).to_contain_text("web-2")
                await expect(lagging).to_have_css("font-weight", "700")
            finally:
                os.kill(paused, signal.SIGCONT)
            await expect(page.locator("#fleet-rows tr[data-state=ok]")).to_have_count(3)
