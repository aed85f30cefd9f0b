"""The system's headless Chromium through Playwright, for the admin page's browser tests
and benchmarks. Playwright is imported only when a browser is launched."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = os.environ.get("WAFFLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@asynccontextmanager
async def chromium(*args: str) -> AsyncIterator[Browser]:
    """Chromium at ``CHROMIUM`` with ``CHROMIUM_ARGS`` and ``args``; closed on exit."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *args], timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(page: Page, base: str, token: str) -> None:
    """Open the admin page at ``base`` and log in with ``token``."""
    await page.goto(base)
    await page.fill("#token", token)
    async with page.expect_navigation():
        await page.click("button:text('Log in')")
