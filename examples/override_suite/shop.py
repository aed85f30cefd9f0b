"""The app under test: it reads its settings through quart-waffle."""

from __future__ import annotations

from quart import Quart, current_app

from quart_waffle import QuartWaffle

app = Quart(__name__)
app.config["WAFFLE_CONFS"] = {
    "MAINTENANCE": {"default": False},
    "MAX_ITEMS": {"default": 20, "min": 1, "max": 500},
    "GREETING": {"default": "Hello"},
}
waffle = QuartWaffle(app)


@app.get("/")
async def index() -> tuple[str, int]:
    if current_app.config["MAINTENANCE"]:
        return "Back soon", 503
    return f"{waffle.get('GREETING')}: {waffle.get('MAX_ITEMS')} items", 200
