"""The demo app: a few settings every worker serves, changed live.

Configured from the environment, which the extension reads (all optional): WAFFLE_DATABASE_URL,
WAFFLE_WATCHTYPE, WAFFLE_WATCHER_FILE, WAFFLE_REDIS_URL, WAFFLE_ADMIN_TOKEN,
WAFFLE_CHECK_INTERVAL, WAFFLE_WATCH_INTERVAL, and WAFFLE_FILLER_SETTINGS (a
number of extra settings FILLER_0... to declare, for benchmarks).
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, current_app

from quart_waffle import QuartWaffle

app = Quart(__name__, instance_path=os.environ.get("WAFFLE_INSTANCE_PATH") or None)
app.config.from_prefixed_env()  # QUART_SECRET_KEY signs the admin page session
app.config["WAFFLE_CONFS"] = {
    "GREETING": {"default": "Hello, world!", "desc": "Shown on the home page", "group": "Content"},
    "BANNER": {
        "default": {"text": "", "level": "info"},
        "desc": "A site-wide banner",
        "group": "Content",
    },
    "MAX_ITEMS": {"default": 20, "desc": "Items per page", "min": 1, "max": 500, "group": "Limits"},
    "RATE": {
        "default": 1.5,
        "desc": "Requests per second per client",
        "min": 0.1,
        "group": "Limits",
    },
    "MAINTENANCE": {"default": False, "desc": "Serve a maintenance notice", "group": "Switches"},
    "THEME": {"default": "light", "choices": ["light", "dark"], "group": "Switches"},
    "API_KEY": {
        "default": "change-me",
        "desc": "Partner API key",
        "secret": True,
        "group": "Secrets",
    },
    **{
        f"FILLER_{index}": {"default": index, "desc": "Benchmark filler", "group": "Filler"}
        for index in range(int(os.environ.get("WAFFLE_FILLER_SETTINGS", "0")))
    },
}
waffle = QuartWaffle(app)


@app.get("/whoami")
async def whoami() -> dict[str, Any]:
    """Which worker answered, at which revision, with which values."""
    return {
        "pid": os.getpid(),
        "revision": waffle.revision,
        "settings": {
            key: waffle.get(key)
            for key in ("GREETING", "MAX_ITEMS", "MAINTENANCE", "BANNER", "THEME")
        },
    }


@app.get("/")
async def index() -> tuple[str, int]:
    """A page that reads settings the Flask-WaffleConf way, through app.config."""
    if current_app.config["MAINTENANCE"]:
        return "Down for maintenance, back soon.", 503
    return current_app.config["GREETING"], 200
