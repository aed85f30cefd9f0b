"""A Quart app with a setting read only at start-up (``POOL_SIZE``, ``restart=True``), for the
restart-required settings tests; configured from the ``WAFFLE_*`` environment.

`GET /whoami` answers the worker's pid, the pool size it started with, and the settings whose
change awaits a restart.
"""

from __future__ import annotations

import os

from quart import Quart

from quart_waffle import QuartWaffle, Setting

app = Quart(__name__, instance_path=os.environ.get("WAFFLE_INSTANCE_PATH") or None)
waffle = QuartWaffle(
    app, settings=[Setting("POOL_SIZE", 5, restart=True), Setting("GREETING", "hello")]
)
started_with: dict[str, int] = {}


@app.before_serving
async def read_pool_size() -> None:
    started_with["POOL_SIZE"] = waffle.get("POOL_SIZE")


@app.get("/whoami")
async def whoami() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "pool": started_with["POOL_SIZE"],
        "pending_restart": waffle.pending_restart,
    }
