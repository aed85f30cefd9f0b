"""The richer kinds across processes: a datetime, a Decimal and a duration
written in one process reach every worker of a real ``hypercorn -w 2``
deployment, over Redis with carried changes (the periodic check a minute
away), as the very Python values a catch-up from the store gives: same type,
same UTC offset, same digits; and real Chromium edits them through the inputs
the table of kinds chose."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

from quart import Quart

from harness import REDIS_URL, Deployment
from harness.browser import chromium, log_in
from quart_waffle import QuartWaffle
from tests.conftest import require
from tests.kinds_rich_app import declarations
from tests.test_admin_browser import _require_browser

TOKEN = "kinds-rich-admin-token-0123456789"


def _waffle(database_url: str, channel: str) -> QuartWaffle:
    return QuartWaffle(
        Quart(__name__),
        database_url=database_url,
        watchtype="redis",
        redis_url=REDIS_URL,
        redis_channel=channel,
        sync_key="kinds-rich-sync-key",
        check_interval=60.0,
        settings=declarations(),
    )


async def test_rich_values_reach_every_worker_as_a_catch_up_reads_them(
    sqlite_url: str, tmp_path: Path
) -> None:
    require("Redis")
    channel = f"waffle-test-{os.urandom(6).hex()}"
    env = {
        "WAFFLE_DATABASE_URL": sqlite_url,
        "WAFFLE_WATCHTYPE": "redis",
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": channel,
        "WAFFLE_SYNC_KEY": "kinds-rich-sync-key",
        "WAFFLE_CHECK_INTERVAL": "60",
        "WAFFLE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    writer = _waffle(sqlite_url, channel)
    deployment = Deployment(
        env, tmp_path / "hypercorn.log", workers=2, app="tests.kinds_rich_app:app"
    )
    async with writer.connected(), deployment:
        pids = await deployment.worker_pids()
        values = {
            "LAUNCH_AT": dt.datetime(
                2026, 6, 1, 18, 30, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
            ),
            "PRICE": Decimal("19.990"),
            "SESSION_TTL": dt.timedelta(hours=1, microseconds=5),
        }
        revision = await writer.update(values)
        reader = _waffle(sqlite_url, channel)
        async with reader.connected():  # a catch-up from the store
            expected = {key: repr(reader.get(key)) for key in values}
        assert expected == {key: repr(value) for key, value in values.items()}
        await deployment.until_all_serve(
            lambda answer: (
                answer["revision"] >= revision
                and {key: answer["settings"][key] for key in expected} == expected
            ),
            pids,
            within=10.0,
        )


async def test_the_widgets_in_a_browser(tmp_path: Path) -> None:
    """Chromium edits a date, a datetime, a Decimal (a number input, step any),
    a URL and a duration through the inputs the table chose, and the worker
    serves the Python values; a naive datetime is refused beside its input."""
    _require_browser()
    from playwright.async_api import expect

    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "none",
        "WAFFLE_INSTANCE_PATH": str(tmp_path / "instance"),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "QUART_SECRET_KEY": "kinds-rich-browser-secret",
    }
    app = "tests.kinds_rich_app:app"
    async with Deployment(env, tmp_path / "hypercorn.log", workers=1, app=app) as deployment:
        async with chromium() as browser:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await log_in(page, f"http://127.0.0.1:{deployment.port}/waffle/", TOKEN)
            assert await page.get_attribute("#value-LAUNCH_DAY", "type") == "date"
            assert await page.get_attribute("#value-WEBHOOK", "type") == "url"
            assert await page.get_attribute("#value-PRICE", "type") == "number"

            async def save(**texts: str) -> None:
                for key, text in texts.items():
                    await page.fill(f"#value-{key}", text)
                await page.wait_for_selector("#settings-form[data-review-ready=true]")
                await page.click("#save")
                async with page.expect_navigation():
                    await page.click("#confirm")

            await save(LAUNCH_AT="2026-06-01T18:30")  # naive
            await expect(page.locator("#error-LAUNCH_AT")).to_contain_text("timezone-aware")
            await save(
                LAUNCH_AT="2026-06-01T18:30:00+02:00",
                LAUNCH_DAY="2026-06-02",
                PRICE="19.990",
                WEBHOOK="https://hooks.example.org/x",
                SESSION_TTL="PT1H30M",
            )
            await expect(page.locator(".notice")).to_contain_text("Saved")
            await expect(page.locator("#value-PRICE")).to_have_value("19.990")
            await expect(page.locator("#value-LAUNCH_DAY")).to_have_value("2026-06-02")
        served = (await deployment.whoami())["settings"]
        assert served["PRICE"] == "Decimal('19.990')"
        assert served["LAUNCH_DAY"] == "datetime.date(2026, 6, 2)"
        assert served["SESSION_TTL"] == "datetime.timedelta(seconds=5400)"
        assert served["LAUNCH_AT"] == repr(
            dt.datetime(2026, 6, 1, 18, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        )
        assert served["WEBHOOK"] == "'https://hooks.example.org/x'"
