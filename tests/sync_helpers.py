"""Helpers shared by the in-process sync tests: polling, counting store reads,
and two workers per channel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import REDIS_URL
from quart_waffle import QuartWaffle
from tests.conftest import require
from tests.helpers import make_waffle


async def until(predicate: Callable[[], bool], within: float, message: str = "") -> float:
    """Poll ``predicate`` until true; return the seconds it took, fail after ``within``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > within:
            pytest.fail(f"not within {within} s: {message}")
        await asyncio.sleep(0.005)
    return loop.time() - start


def store_reads(waffle: QuartWaffle, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every catch-up query ``waffle`` makes from now on."""
    store = waffle._connected().store
    original = store.changes_since
    calls: list[int] = []

    async def counted(revision: int) -> Any:
        calls.append(revision)
        return await original(revision)

    monkeypatch.setattr(store, "changes_since", counted)
    return calls


def channel_name() -> str:
    """A Redis channel name no other test uses (tests run in parallel on one Redis)."""
    return f"waffle-test-{os.urandom(6).hex()}"


def channel_options(
    request: pytest.FixtureRequest, tmp_path: Path, watchtype: str
) -> dict[str, Any]:
    """Options for workers on one store that hear each other on ``watchtype``
    (a fresh channel name on the shared Redis, so parallel runs never hear
    each other); the periodic check is a minute away."""
    options: dict[str, Any] = {"watchtype": watchtype, "check_interval": 60.0}
    if watchtype == "file":
        options["database_url"] = request.getfixturevalue("sqlite_url")
        options["watcher_file"] = str(tmp_path / "run" / "waffle.revision")
    elif watchtype == "redis":
        require("Redis")
        options["database_url"] = request.getfixturevalue("sqlite_url")
        options["redis_url"] = REDIS_URL
        options["redis_channel"] = channel_name()
    else:
        options["database_url"] = request.getfixturevalue("postgres_url")
    return options


def worker(options: dict[str, Any], **overrides: Any) -> QuartWaffle:
    """One worker (app) with ``options``, ``overrides`` winning."""
    merged = {**options, **overrides}
    return make_waffle(merged.pop("database_url"), **merged)
