"""The admin page in a real browser (the system's headless Chromium through
Playwright) against ``hypercorn -w 4 examples.app:app``: a change made on the
page on one worker is served by every worker."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from harness import IN_CI, Deployment

CHROMIUM = os.environ.get("WAFFLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-admin-token-0123456789"


def _require_browser() -> None:
    """Skip (or, under CI=true, fail) when Chromium or Playwright is missing."""
    reasons = []
    if not os.access(CHROMIUM, os.X_OK):
        reasons.append(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        reasons.append("Playwright for Python is not installed (pip install playwright)")
    if not reasons:
        return
    reason = "; ".join(reasons)
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


async def test_page_change_reaches_every_worker(tmp_path: Path) -> None:
    _require_browser()
    from playwright.async_api import async_playwright, expect

    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "QUART_SECRET_KEY": "browser-test-secret-key",
    }
    async with Deployment(env, tmp_path / "hypercorn.log", workers=4) as deployment:
        pids = await deployment.worker_pids()
        base = f"http://127.0.0.1:{deployment.port}/waffle/"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(15_000)
                await page.goto(base)
                await page.fill("#token", TOKEN)
                await page.click("button:text('Log in')")
                await expect(page.locator("#settings-form")).to_be_visible()

                # An invalid value: the review lists it, the server refuses it inline.
                await page.fill("#value-MAX_ITEMS", "9999")
                await page.wait_for_selector("#settings-form[data-review-ready=true]")
                await page.click("#save")
                await expect(page.locator("#review-rows tr[data-key=MAX_ITEMS]")).to_be_visible()
                await page.click("#confirm")
                await expect(page.locator("#error-MAX_ITEMS")).to_contain_text("at most 500")

                # A valid change: reviewed as a diff, then confirmed.
                await page.fill("#value-MAX_ITEMS", "20")
                await page.fill("#value-GREETING", "Hello from the browser")
                await page.select_option("#value-THEME", "dark")
                await page.wait_for_selector("#settings-form[data-review-ready=true]")
                await page.click("#save")
                rows = page.locator("#review-rows tr")
                await expect(rows).to_have_count(2)
                await expect(page.locator("#review-rows tr[data-key=GREETING]")).to_contain_text(
                    "Hello, world!"
                )
                await expect(page.locator("#review-rows tr[data-key=THEME]")).to_contain_text(
                    "dark"
                )
                await page.click("#confirm")
                await expect(page.locator(".notice")).to_contain_text("Saved")
                html = await page.content()
                assert "change-me" not in html  # the demo's secret default

                # The secret is masked and its empty input means "unchanged".
                await expect(page.locator("#value-API_KEY")).to_have_value("")
            finally:
                await browser.close()

        seen = await deployment.until_all_serve(
            lambda body: (
                body["settings"]["GREETING"] == "Hello from the browser"
                and body["settings"]["THEME"] == "dark"
            ),
            pids,
            within=15.0,
        )
        assert set(seen) == pids


def _page_env(tmp_path: Path) -> dict[str, str]:
    return {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "QUART_SECRET_KEY": "browser-test-secret-key",
    }


async def test_plain_http_on_a_lan_name_says_why_login_cannot_work(tmp_path: Path) -> None:
    """Over plain HTTP on a name other than localhost, browsers drop the Secure
    cookie: the page says so instead of a login that silently comes back."""
    _require_browser()
    from playwright.async_api import async_playwright, expect

    async with Deployment(_page_env(tmp_path), tmp_path / "hypercorn.log", workers=1) as server:
        lan = f"http://admin.lan.test:{server.port}/waffle/"
        local = f"http://localhost:{server.port}/waffle/"
        rules = "--host-resolver-rules=MAP admin.lan.test 127.0.0.1"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules], timeout=30_000
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(15_000)
                await page.goto(lan)
                await expect(page.locator(".message")).to_contain_text("needs HTTPS")
                await expect(page.locator("#token")).to_have_count(0)
                # The same server reached as localhost logs in.
                await page.goto(local)
                await page.fill("#token", TOKEN)
                await page.click("button:text('Log in')")
                await expect(page.locator("#settings-form")).to_be_visible()
            finally:
                await browser.close()


async def test_login_reset_to_default_and_logout(tmp_path: Path) -> None:
    """Log in, change a setting, reset it to its default with its button, log
    out; the session cookie copied before logging out no longer works on any
    worker."""
    _require_browser()
    from playwright.async_api import async_playwright, expect

    async with Deployment(_page_env(tmp_path), tmp_path / "hypercorn.log", workers=2) as server:
        base = f"http://127.0.0.1:{server.port}/waffle/"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
            try:
                context = await browser.new_context()
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await page.goto(base)
                await expect(page.locator(".worker")).to_have_count(0)  # no pid before login
                await page.fill("#token", TOKEN)
                await page.click("button:text('Log in')")
                await expect(page.locator("#settings-form")).to_be_visible()
                await expect(page.locator("#default-MAX_ITEMS")).to_be_visible()

                await page.fill("#value-MAX_ITEMS", "77")
                await page.wait_for_selector("#settings-form[data-review-ready=true]")
                await page.click("#save")
                async with page.expect_navigation():
                    await page.click("#confirm")
                await expect(page.locator(".notice")).to_contain_text("Saved")
                await expect(page.locator("#value-MAX_ITEMS")).to_have_value("77")
                await expect(page.locator("#default-MAX_ITEMS")).to_have_count(0)

                async with page.expect_navigation():
                    await page.click("#reset-MAX_ITEMS")
                await expect(page.locator(".notice")).to_contain_text("Saved")
                await expect(page.locator("#value-MAX_ITEMS")).to_have_value("20")
                await expect(page.locator("#default-MAX_ITEMS")).to_be_visible()

                # The session cookie copied into another browser works until logout.
                copied = await context.cookies()
                assert [cookie["name"] for cookie in copied] == ["waffle_admin"]
                thief = await browser.new_context()
                await thief.add_cookies(
                    [{"name": c["name"], "value": c["value"], "url": base} for c in copied]
                )
                stolen = await thief.new_page()
                await stolen.goto(base)
                await expect(stolen.locator("#settings-form")).to_be_visible()

                await page.click("button:text('Log out')")
                await expect(page.locator("#token")).to_be_visible()
                for _ in range(4):  # requests spread over both workers
                    await stolen.goto(base)
                    await expect(stolen.locator("#token")).to_be_visible()
                    await expect(stolen.locator("#settings-form")).to_have_count(0)
            finally:
                await browser.close()
