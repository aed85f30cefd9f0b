"""A datetime, a Decimal and a duration written in one process reach every
worker of a real ``hypercorn -w 2`` deployment, over Redis with carried
changes (the periodic check a minute away), as the very Python values a
catch-up from the store gives: same type, same UTC offset, same digits."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

from quart import Quart

from harness import REDIS_URL, Deployment
from quart_waffle import QuartWaffle
from tests.conftest import require
from tests.kinds_rich_app import declarations


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
            lambda answer: answer["revision"] >= revision and answer["settings"] == expected,
            pids,
            within=10.0,
        )
