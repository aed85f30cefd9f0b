"""The baseline for the throughput benchmark: the demo's ``/`` route on a bare
Quart app, its settings in a plain ``app.config``, no extension."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, current_app

app = Quart(__name__)
app.config.update(GREETING="Hello, world!", MAINTENANCE=False)


@app.get("/whoami")
async def whoami() -> dict[str, Any]:
    return {"pid": os.getpid(), "revision": 0, "settings": {"GREETING": app.config["GREETING"]}}


@app.get("/")
async def index() -> tuple[str, int]:
    """The same body as ``examples.app``'s index."""
    if current_app.config["MAINTENANCE"]:
        return "Down for maintenance, back soon.", 503
    return current_app.config["GREETING"], 200
