"""The admin page in a real browser (the system's headless Chromium through
Playwright) against ``hypercorn -w 4 examples.app:app``, one server and one
browser for every step (each costs seconds): plain HTTP on a LAN name says
why it cannot log in; log in; an invalid value is refused inline; a change is
reviewed, saved and served by every worker; reset to default; a read-only
user sees every input and Save disabled and no reset button; log out, after
which a copy of the session cookie works on no worker."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import IN_CI, Deployment
from harness.browser import CHROMIUM, chromium

if TYPE_CHECKING:
    from playwright.async_api import Browser

LAN_NAME = "admin.lan.test"
TOKEN = "browser-admin-token-0123456789"
VIEWER = "browser-viewer-token-0123456789"


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


async def test_admin_page_in_a_browser(tmp_path: Path) -> None:
    _require_browser()

    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "WAFFLE_ADMIN_TOKENS": json.dumps({"viewer": {"token": VIEWER, "role": "read"}}),
        "QUART_SECRET_KEY": "browser-test-secret-key",
    }
    async with Deployment(env, tmp_path / "hypercorn.log", workers=4) as deployment:
        pids = await deployment.worker_pids()
        port = deployment.port
        async with chromium(f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1") as browser:
            await _plain_http_on_a_lan_name(browser, f"http://{LAN_NAME}:{port}/waffle/")
            await _edit_reset_and_log_out(browser, f"http://127.0.0.1:{port}/waffle/")
            await _read_only(browser, f"http://127.0.0.1:{port}/waffle/")

        seen = await deployment.until_all_serve(
            lambda body: (
                body["settings"]["GREETING"] == "Hello from the browser"
                and body["settings"]["THEME"] == "dark"
                and body["settings"]["MAX_ITEMS"] == 20
            ),
            pids,
            within=15.0,
        )
        assert set(seen) == pids


async def _plain_http_on_a_lan_name(browser: Browser, base: str) -> None:
    """Over plain HTTP on a name other than localhost, Chromium drops the
    Secure cookie: the page says so instead of a login that comes back."""
    from playwright.async_api import expect

    page = await browser.new_page()
    page.set_default_timeout(15_000)
    await page.goto(base)
    await expect(page.locator(".message")).to_contain_text("needs HTTPS")
    await expect(page.locator("#token")).to_have_count(0)
    await page.close()


async def _edit_reset_and_log_out(browser: Browser, base: str) -> None:
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(base)
    await expect(page.locator(".worker")).to_have_count(0)  # no pid before login
    await page.fill("#token", TOKEN)
    async with page.expect_navigation():
        await page.click("button:text('Log in')")
    await expect(page.locator("#settings-form")).to_be_visible()
    await expect(page.locator("#default-MAX_ITEMS")).to_be_visible()

    # An invalid value: the review lists it, the server refuses it inline.
    await page.fill("#value-MAX_ITEMS", "9999")
    await page.wait_for_selector("#settings-form[data-review-ready=true]")
    await page.click("#save")
    await expect(page.locator("#review-rows tr[data-key=MAX_ITEMS]")).to_be_visible()
    async with page.expect_navigation():
        await page.click("#confirm")
    await expect(page.locator("#error-MAX_ITEMS")).to_contain_text("at most 500")

    # Valid changes: reviewed as a diff, then confirmed.
    await page.fill("#value-MAX_ITEMS", "77")
    await page.fill("#value-GREETING", "Hello from the browser")
    await page.select_option("#value-THEME", "dark")
    await page.wait_for_selector("#settings-form[data-review-ready=true]")
    await page.click("#save")
    await expect(page.locator("#review-rows tr")).to_have_count(3)
    await expect(page.locator("#review-rows tr[data-key=GREETING]")).to_contain_text(
        "Hello, world!"
    )
    await expect(page.locator("#review-rows tr[data-key=THEME]")).to_contain_text("dark")
    async with page.expect_navigation():
        await page.click("#confirm")
    await expect(page.locator(".notice")).to_contain_text("Saved")
    await expect(page.locator("#value-MAX_ITEMS")).to_have_value("77")
    await expect(page.locator("#default-MAX_ITEMS")).to_have_count(0)
    assert "change-me" not in await page.content()  # the demo's secret default
    await expect(page.locator("#value-API_KEY")).to_have_value("")  # masked: empty = unchanged

    # Reset to default: one button, one key.
    async with page.expect_navigation():
        await page.click("#reset-MAX_ITEMS")
    await expect(page.locator(".notice")).to_contain_text("Saved")
    await expect(page.locator("#value-MAX_ITEMS")).to_have_value("20")
    await expect(page.locator("#default-MAX_ITEMS")).to_be_visible()
    await expect(page.locator("#value-THEME")).to_have_value("dark")

    # The session cookie copied into another browser works until logout.
    copied = await context.cookies()
    assert [cookie["name"] for cookie in copied] == ["waffle_admin"]
    thief = await browser.new_context()
    await thief.add_cookies([{"name": c["name"], "value": c["value"], "url": base} for c in copied])
    stolen = await thief.new_page()
    await stolen.goto(base)
    await expect(stolen.locator("#settings-form")).to_be_visible()
    async with page.expect_navigation():
        await page.click("button:text('Log out')")
    await expect(page.locator("#token")).to_be_visible()
    for _ in range(4):  # requests spread over the workers
        await stolen.goto(base)
        await expect(stolen.locator("#token")).to_be_visible()
        await expect(stolen.locator("#settings-form")).to_have_count(0)
    await thief.close()
    await context.close()


async def _read_only(browser: Browser, base: str) -> None:
    """A read-only token's page: every input and Save disabled, no reset
    button (GREETING and THEME no longer follow their defaults)."""
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(base)
    await page.fill("#token", VIEWER)
    async with page.expect_navigation():
        await page.click("button:text('Log in')")
    await expect(page.locator(".notice")).to_contain_text("read-only")
    await expect(page.locator("#save")).to_be_disabled()
    await expect(page.locator("#value-GREETING")).to_be_disabled()
    await expect(page.locator("#value-GREETING")).to_have_value("Hello from the browser")
    await expect(page.locator("#settings-form .setting")).not_to_have_count(0)
    await expect(page.locator("#settings-form .setting :enabled:not([type=hidden])")).to_have_count(
        0
    )
    await expect(page.locator("button.reset")).to_have_count(0)
    await context.close()
