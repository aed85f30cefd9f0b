"""The demo app for the sync tests: ``POST /test/update`` (a JSON object of
settings) updates through this worker, and each worker reports on stderr what
its shutdown left behind, after quart-waffle's own ``after_serving``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from quart import request

from examples.app import app, waffle


@app.post("/test/update")
async def update() -> dict[str, Any]:
    revision = await waffle.update(await request.get_json(), actor="test")
    return {"pid": os.getpid(), "revision": revision}


@app.after_serving
async def report_shutdown() -> None:
    left = sorted(
        task.get_name() for task in asyncio.all_tasks() if "waffle" in task.get_name().lower()
    )
    health = waffle.health()
    print(
        f"shutdown pid={os.getpid()} waffle_tasks={left} connected={health.connected}",
        file=sys.stderr,
        flush=True,
    )


__all__ = ["app"]
