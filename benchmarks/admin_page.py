"""The admin page at scale: what rendering it costs on the server, and how
quickly its search answers in a real browser, at 10 to 1,000 declared settings
(examples/many_settings.py); optionally the docs' screenshot of the page at
1,000 settings with a search applied.

    python -m benchmarks.admin_page                  # figures only, about 30 s
    python -m benchmarks.admin_page --screenshot docs/images/admin-page-1000-settings.png

Server figures come from the app's test client in this process (no network):
the median of ``--renders`` renders of ``GET /waffle/`` after a warm-up, the
HTML's size (and gzipped), and the SQL statements one render runs, with each
size's ratio to 10 settings measured in the same run. Browser figures (system
Chromium through Playwright, against ``hypercorn -w 1``): page load to
DOMContentLoaded, and a search typed to the list narrowed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from quart import Quart
from sqlalchemy import event
from sqlalchemy.engine import Engine

from examples.many_settings import declarations
from harness import Deployment
from harness.browser import chromium, log_in
from quart_waffle import QuartWaffle

TOKEN = "benchmark-admin-token-0123456789"
SECRET_KEY = "benchmark-secret-key"
SIZES = (10, 100, 1000)
SEARCH = "retries"


async def _logged_in(client: Any) -> None:
    import re

    login = await (await client.get("/waffle/")).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    answer = await client.post("/waffle/login", form={"csrf": csrf.group(1), "token": TOKEN})
    assert answer.status_code == 303, answer.status_code


async def server_figures(size: int, renders: int, directory: Path) -> dict[str, float]:
    """Median render time (ms), HTML bytes, gzipped bytes, statements per render."""
    app = Quart(__name__)
    app.secret_key = SECRET_KEY
    app.config["WAFFLE_CONFS"] = declarations(size)
    url = f"sqlite:///{directory / f'render-{size}.db'}"
    QuartWaffle(app, database_url=url, watchtype="none", admin_token=TOKEN)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    async with app.test_app():
        client = app.test_client()
        await _logged_in(client)
        await client.get("/waffle/")  # templates compiled, caches warm
        times = []
        for _ in range(renders):
            started = time.perf_counter()
            response = await client.get("/waffle/")
            html = await response.get_data(as_text=False)
            times.append(time.perf_counter() - started)
        filtered = time.perf_counter()
        await client.get(f"/waffle/?q={SEARCH}")
        filtered = time.perf_counter() - filtered
        event.listen(Engine, "before_cursor_execute", record)
        try:
            await client.get("/waffle/")
        finally:
            event.remove(Engine, "before_cursor_execute", record)
    return {
        "render_ms": statistics.median(times) * 1000,
        "filtered_ms": filtered * 1000,
        "bytes": len(html),
        "gzip_bytes": len(gzip.compress(html)),
        "statements": len(statements),
    }


async def browser_figures(directory: Path, screenshot: Path | None) -> dict[str, float]:
    """Load and search times in Chromium at 1,000 settings; the screenshot if asked."""
    from playwright.async_api import expect

    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{directory / 'browser.db'}",
        "WAFFLE_WATCHTYPE": "none",
        "WAFFLE_INSTANCE_PATH": str(directory),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "QUART_SECRET_KEY": SECRET_KEY,
    }
    log = directory / "hypercorn.log"
    async with Deployment(env, log, workers=1, app="examples.many_settings:app") as server:
        base = f"http://127.0.0.1:{server.port}/waffle/"
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            headers = {"Authorization": f"Bearer {TOKEN}"}
            changes = {"values": {"BILLING_RETRIES_2": 5, "EMAIL_RETRIES_1": 0}}
            answer = await page.request.patch(f"{base}api/settings", data=changes, headers=headers)
            assert answer.ok, await answer.text()
            await log_in(page, base, TOKEN)
            await page.wait_for_selector("#filter-form[data-filter-ready=true]")
            loaded = await page.evaluate(
                "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
            )
            started = time.perf_counter()
            await page.fill("#filter-q", SEARCH)
            await expect(page.locator("#filter-status")).not_to_have_text(
                "Showing 1000 of 1000 settings"
            )
            searched = time.perf_counter() - started
            if screenshot is not None:
                await page.locator("details.group[data-group=Search] summary").click()
                await page.evaluate("window.scrollTo(0, 0)")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(screenshot))
                print(f"wrote {screenshot}")
    return {"load_ms": loaded, "search_ms": searched * 1000}


async def main(renders: int, screenshot: Path | None, browser: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="waffle-admin-page-") as folder:
        directory = Path(folder)
        figures = {size: await server_figures(size, renders, directory) for size in SIZES}
        base = figures[SIZES[0]]
        print(
            "| settings | render ms (median) | ratio to 10 | ?q= render ms | HTML KiB"
            " | gzipped KiB | SQL statements per render |"
        )
        print("|---|---|---|---|---|---|---|")
        for size, row in figures.items():
            print(
                f"| {size} | {row['render_ms']:.1f} | {row['render_ms'] / base['render_ms']:.1f}x"
                f" | {row['filtered_ms']:.1f} | {row['bytes'] / 1024:.0f}"
                f" | {row['gzip_bytes'] / 1024:.0f} | {row['statements']:.0f} |"
            )
        if browser or screenshot is not None:
            seen = await browser_figures(directory, screenshot)
            print(
                f"Chromium at 1,000 settings: DOMContentLoaded {seen['load_ms']:.0f} ms,"
                f" search {SEARCH!r} typed to list narrowed {seen['search_ms']:.0f} ms"
            )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=10, help="renders timed per size")
    parser.add_argument("--screenshot", type=Path, help="write the docs' PNG here")
    parser.add_argument("--no-browser", action="store_true", help="server figures only")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.renders, arguments.screenshot, not arguments.no_browser))
