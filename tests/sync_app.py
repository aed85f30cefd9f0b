"""The demo app for the sync tests and benchmarks: ``POST /test/update`` (a
JSON object of settings) updates through this worker; ``GET /test/applied``
tells when (wall clock) this worker applied each recent revision; each worker
reports on stderr what its shutdown left behind, after quart-waffle's own
``after_serving``.

With ``WAFFLE_TEST_OUTLIVE_TERMINATE`` set, a worker ignores SIGTERM once it serves.
``hypercorn -w N``'s parent terminates every worker as soon as the first one has exited,
so a worker whose shutdown ends a moment later would be cut short and report nothing;
ignoring it, each finishes its shutdown, and a shutdown that hangs still fails the test
(the parent waits for it, and is killed after the harness's grace)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import deque
from typing import Any

from quart import Quart, request

from examples.app import app, waffle
from quart_waffle import settings_changed

applied_at: deque[tuple[int, float]] = deque(maxlen=1000)


@settings_changed.connect_via(app)
def record(_app: Quart, revision: int, changes: dict[str, Any]) -> None:
    applied_at.append((revision, time.time()))


@app.get("/test/applied")
async def applied() -> dict[str, Any]:
    return {"pid": os.getpid(), "applied": {str(rev): when for rev, when in applied_at}}


@app.post("/test/update")
async def update() -> dict[str, Any]:
    revision = await waffle.update(await request.get_json(), actor="test")
    return {"pid": os.getpid(), "revision": revision}


@app.before_serving
async def outlive_terminate() -> None:
    if os.environ.get("WAFFLE_TEST_OUTLIVE_TERMINATE"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
