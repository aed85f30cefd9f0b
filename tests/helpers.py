"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from quart import Quart
from quart.typing import TestClientProtocol

from quart_waffle import InvalidValueError, QuartWaffle, Setting

CONFS: dict[str, dict[str, Any]] = {
    "GREETING": {"default": "Hello", "desc": "Home page greeting"},
    "MAX_ITEMS": {"default": 20, "min": 1, "max": 500},
    "RATE": {"default": 1.5, "min": 0.0},
    "MAINTENANCE": {"default": False},
    "BANNER": {"default": {"text": "", "level": "info"}},
    "THEME": {"default": "light", "choices": ["light", "dark"]},
    "API_KEY": {"default": "s3cret", "secret": True},
}
ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "test-secret-key"


KindCase = tuple[str, Any, str, Any, Any, str, str]
"""A row of a kinds test's table: key, a good value as JSON, the same as
typed text, the Python value both give, a bad value as JSON, one as text,
and a pattern of the words refusing them."""


def check_case(
    setting: Setting[Any],
    case: KindCase,
    also_refused: list[tuple[Callable[[Any], Any], Any]] | None = None,
) -> None:
    """``setting`` reads the case's good JSON and text as its value, and
    refuses its bad ones (and each ``attempt(wrong)`` of ``also_refused``)
    naming its key with words matching the pattern."""
    key, good, text, value, bad, bad_text, words = case
    assert setting.validate(good) == value
    assert setting.parse_text(text) == value
    attempts = [(setting.validate, bad), (setting.parse_text, bad_text), *(also_refused or [])]
    for attempt, wrong in attempts:
        with pytest.raises(InvalidValueError) as caught:
            attempt(wrong)
        assert re.search(words, caught.value.errors[key]), caught.value.errors


def make_waffle(database_url: str, **options: Any) -> QuartWaffle:
    """A new app (one "worker") with the test declarations on ``database_url``."""
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = options.pop("confs", CONFS)
    options.setdefault("watchtype", "none")
    return QuartWaffle(app, database_url=database_url, **options)


def declared_waffle(database_url: str, settings: list[Setting[Any]]) -> QuartWaffle:
    """A new app declaring ``settings`` on ``database_url``, with the admin
    (token, page session key) and no channel."""
    app = Quart(__name__)
    app.secret_key = SECRET_KEY
    return QuartWaffle(
        app, database_url=database_url, watchtype="none", settings=settings, admin_token=ADMIN_TOKEN
    )


def worker_pair(database_url: str, **options: Any) -> tuple[QuartWaffle, QuartWaffle]:
    """Two workers (apps) with the same options on one store."""
    return make_waffle(database_url, **options), make_waffle(database_url, **options)


def file_pair(database_url: str, watcher_file: Path) -> tuple[QuartWaffle, QuartWaffle]:
    """Two workers on one store that hear of changes through the file channel
    alone (the periodic check is a minute away)."""
    return worker_pair(
        database_url, watchtype="file", watcher_file=str(watcher_file), check_interval=60.0
    )


@contextlib.asynccontextmanager
async def serving_admin(waffle: QuartWaffle) -> AsyncIterator[QuartWaffle]:
    """Serve ``waffle``'s app around the block, with a SECRET_KEY for the admin page's session."""
    assert waffle.app is not None
    waffle.app.secret_key = SECRET_KEY
    async with waffle.app.test_app():
        yield waffle


@contextlib.asynccontextmanager
async def serving(*waffles: QuartWaffle) -> AsyncIterator[None]:
    """Run each waffle's app serving hooks (start-up, then shut-down) around the block."""
    if not waffles:
        yield
        return
    first, *others = waffles
    assert first.app is not None
    async with first.app.test_app(), serving(*others):
        yield


@contextlib.asynccontextmanager
async def client_of(waffle: QuartWaffle) -> AsyncIterator[TestClientProtocol]:
    """Serve ``waffle``'s app around the block; its test client."""
    assert waffle.app is not None
    async with serving(waffle):
        yield waffle.app.test_client()


def cli_of(waffle: QuartWaffle) -> Callable[..., Result]:
    """Runs ``waffle``'s CLI command: ``cli_of(waffle)("set", "MAX_ITEMS=5")``."""
    assert waffle.app is not None
    runner = waffle.app.test_cli_runner()

    def run(*args: str) -> Result:
        result: Result = runner.invoke(args=["waffle", *args])
        return result

    return run


async def sqlite_threads_stopped(within: float) -> None:
    """Until no aiosqlite connection thread runs (``within`` seconds at most).

    A connection closed, or one that failed to open, ends its thread through a
    future nobody awaits; if the test's event loop closes first, the thread's
    answer lands on a closed loop, as a thread exception in a later test."""
    for _ in range(round(within / 0.01)):
        if not any(
            thread.name.endswith("(_connection_worker_thread)") and thread.is_alive()
            for thread in threading.enumerate()
        ):
            return
        await asyncio.sleep(0.01)
