"""An app declaring a datetime and a Decimal setting, for the deployment test
and the browser test of tests/test_kinds_rich_paths.py: ``GET /whoami`` answers each worker's pid,
revision and the ``repr`` of each value it serves (so a type, an offset or a
trailing zero that differs shows)."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

from quart import Quart

from quart_waffle import QuartWaffle, Setting


def declarations() -> list[Setting[Any]]:
    return [
        Setting("LAUNCH_AT", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        Setting("PRICE", Decimal("9.99")),
        Setting("SESSION_TTL", dt.timedelta(minutes=15)),
        Setting("LAUNCH_DAY", dt.date(2026, 1, 1)),
        Setting("WEBHOOK", "https://example.com/hook", type="url"),
    ]


app = Quart(__name__, instance_path=os.environ.get("WAFFLE_INSTANCE_PATH") or None)
app.config.from_prefixed_env()  # QUART_SECRET_KEY signs the admin page session
waffle = QuartWaffle(app, settings=declarations())


@app.get("/whoami")
async def whoami() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "revision": waffle.revision,
        "settings": {setting.key: repr(waffle.get(setting.key)) for setting in declarations()},
    }
