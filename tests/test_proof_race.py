"""The race the design forbids, provoked on purpose: a change committed and
announced right after a starting worker's initial read, before it has finished
starting. Because each worker subscribes before it loads, the announcement
reaches it and it serves the change at once, not a minute later at its
periodic check."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from harness import REDIS_URL
from quart_waffle import settings_changed
from quart_waffle.store import SettingsStore, StoredValue
from tests.conftest import require
from tests.helpers import make_waffle, serving

BY_MESSAGE = 1.5
"""Seconds; the periodic check is a minute away, so only a message meets this."""


@pytest.fixture(name="options", params=["file", "redis", "postgres"])
def _options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """One store and one channel for two workers, the periodic check a minute away."""
    watchtype: str = request.param
    options: dict[str, Any] = {"watchtype": watchtype, "check_interval": 60.0}
    if watchtype == "postgres":
        options["database_url"] = request.getfixturevalue("postgres_url")
    else:
        options["database_url"] = request.getfixturevalue("sqlite_url")
    if watchtype == "file":
        options["watcher_file"] = str(tmp_path / "run" / "waffle.revision")
    if watchtype == "redis":
        require("Redis")
        options["redis_url"] = REDIS_URL
        options["redis_channel"] = f"waffle-test-{os.urandom(6).hex()}"
    return options


def after_first_read(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[int]]
) -> list[int]:
    """Make the next ``changes_since`` call run ``meanwhile`` as soon as its
    read returns, before handing the (now stale) rows back; the revisions
    ``meanwhile`` returned are collected in the list returned."""
    original = SettingsStore.changes_since
    armed = [True]
    committed: list[int] = []

    async def read_then_commit(store: SettingsStore, revision: int) -> list[StoredValue]:
        rows = await original(store, revision)
        if armed:
            armed.clear()  # the writer's own catch-up inside meanwhile() reads plainly
            committed.append(await meanwhile())
        return rows

    monkeypatch.setattr(SettingsStore, "changes_since", read_then_commit)
    return committed


async def test_change_right_after_the_initial_read_arrives_by_message(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = options.pop("database_url")
    writer = make_waffle(database_url, **options)
    starting = make_waffle(database_url, **options)
    applied = asyncio.Event()

    def on_change(_app: object, revision: int, changes: dict[str, Any]) -> None:
        if committed and revision >= committed[0]:
            applied.set()

    settings_changed.connect(on_change, sender=starting.app)
    async with serving(writer):
        committed = after_first_read(
            monkeypatch, lambda: writer.update({"GREETING": "committed mid-start"})
        )
        async with serving(starting):
            [revision] = committed
            assert starting.revision < revision  # it loaded before the commit: the race is real
            try:
                await asyncio.wait_for(applied.wait(), BY_MESSAGE)
            except TimeoutError:
                pytest.fail(
                    f"the worker serves revision {starting.revision}, not {revision}, after"
                    f" {BY_MESSAGE} s: the announcement made right after its initial read was lost"
                )
            assert starting.revision == revision
            assert starting.get("GREETING") == "committed mid-start"
    settings_changed.disconnect(on_change, sender=starting.app)
