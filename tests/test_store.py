"""The store and the extension's Python API on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from quart_waffle import (
    ConfigurationError,
    ConflictError,
    InvalidValueError,
    QuartWaffle,
    StoreUnavailableError,
    UnknownSettingError,
)
from quart_waffle.store import SettingsStore, create_engine
from tests.helpers import CONFS, make_waffle, sqlite_threads_stopped, worker_pair


async def test_defaults_then_update(database_url: str) -> None:
    waffle = make_waffle(database_url)
    assert waffle.app is not None
    assert waffle.app.config["GREETING"] == "Hello"
    async with waffle.connected():
        assert waffle.revision == 0
        revision = await waffle.update({"GREETING": "Hi", "MAX_ITEMS": 50}, actor="test")
        assert revision == 1
        assert waffle.get("GREETING") == "Hi"
        assert waffle.app.config["MAX_ITEMS"] == 50
        assert waffle.snapshot.revisions["GREETING"] == 1
        assert waffle.snapshot.revisions["THEME"] == 0
    other = make_waffle(database_url)
    async with other.connected():
        assert other.revision == 1
        assert other.get("GREETING") == "Hi"


async def test_invalid_update_stores_nothing(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        with pytest.raises(InvalidValueError) as caught:
            await waffle.update(
                {"GREETING": "fine", "MAX_ITEMS": 0, "MAINTENANCE": "false", "NOPE": 1}
            )
        assert caught.value.errors == {
            "MAX_ITEMS": "must be at least 1",
            "MAINTENANCE": "must be true or false, got str",
            "NOPE": "unknown setting",
        }
        assert await waffle.history() == []
        assert await waffle.refresh() == 0
        assert waffle.get("GREETING") == "Hello"
        with pytest.raises(InvalidValueError, match="no settings given"):
            await waffle.update({})


async def test_conflicts_are_per_key(database_url: str) -> None:
    first, second = make_waffle(database_url), make_waffle(database_url)
    async with first.connected(), second.connected():
        base = second.revision
        await first.update({"GREETING": "from first"}, expected_revision=first.revision)
        with pytest.raises(ConflictError) as caught:
            await second.update(
                {"GREETING": "from second", "THEME": "dark"}, expected_revision=base
            )
        assert caught.value.current == {"GREETING": "from first"}
        assert caught.value.revisions == {"GREETING": 1}
        assert second.get("THEME") == "light"  # the whole write was refused
        # another key, based on the same old revision, is no conflict
        assert await second.update({"THEME": "dark"}, expected_revision=base) == 2
        assert second.get("GREETING") == "from first"  # caught up on the way


async def test_concurrent_writers_get_distinct_revisions(database_url: str) -> None:
    workers = [make_waffle(database_url) for _ in range(3)]
    async with workers[0].connected(), workers[1].connected(), workers[2].connected():

        async def write_many(waffle: QuartWaffle, offset: int) -> None:
            for index in range(10):
                await waffle.update({"MAX_ITEMS": offset + index + 1}, actor=f"w{offset}")

        await asyncio.gather(*(write_many(w, n * 100) for n, w in enumerate(workers)))
        history = await workers[0].history(limit=100)
        assert sorted(entry.revision for entry in history) == list(range(1, 31))
        for waffle in workers:
            assert await waffle.refresh() == 30
        assert {w.get("MAX_ITEMS") for w in workers} == {history[0].new_value}


async def test_catch_up_reads_only_what_changed(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "a"})
        await waffle.update({"MAX_ITEMS": 3, "THEME": "dark"})
        await waffle.update({"GREETING": "b"})
        store = SettingsStore(create_engine(database_url))
        try:
            changed = await store.changes_since(1)
            assert {(row.key, row.revision) for row in changed} == {
                ("MAX_ITEMS", 2),
                ("THEME", 2),
                ("GREETING", 3),
            }
            assert await store.changes_since(3) == []
            assert await store.latest_revision() == 3
        finally:
            await store.engine.dispose()


async def test_history_records_actor_old_and_new(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "one"}, actor="alice")
        await waffle.update({"GREETING": "two", "RATE": 2}, actor="bob")
        await waffle.update({"GREETING": "two"}, actor="nobody")  # no change, no revision
        entries = await waffle.history()
        assert [(e.revision, e.key, e.old_value, e.new_value, e.actor) for e in entries] == [
            (2, "RATE", 1.5, 2.0, "bob"),
            (2, "GREETING", "one", "two", "bob"),
            (1, "GREETING", "Hello", "one", "alice"),
        ]
        assert entries[0].changed_at is not None
        assert entries[0].changed_at.year >= 2024
        assert entries[0].id > entries[1].id > entries[2].id
        page = await waffle.history(key="GREETING", before_id=entries[1].id, limit=5)
        assert [e.new_value for e in page] == ["one"]
        with pytest.raises(UnknownSettingError):
            await waffle.history(key="NOPE")


async def test_reset_restores_default(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"BANNER": {"text": "Sale!", "level": "warn"}})
        await waffle.reset(["BANNER"], actor="ops")
        assert waffle.get("BANNER") == {"text": "", "level": "info"}
        assert (await waffle.history(limit=1))[0].actor == "ops"


async def test_seeding_keeps_stored_values_and_adds_new_keys(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "kept"})
    redeployed = make_waffle(
        database_url, confs={**CONFS, "NEW_SWITCH": {"default": True}, "GREETING": {"default": "x"}}
    )
    async with redeployed.connected():
        assert redeployed.get("GREETING") == "kept"
        assert redeployed.get("NEW_SWITCH") is True


async def test_unknown_key_and_registration_errors(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url)
    with pytest.raises(UnknownSettingError):
        waffle.get("NOPE")
    assert waffle.app is not None
    with pytest.raises(RuntimeError, match="already registered"):
        QuartWaffle(waffle.app)
    with pytest.raises(RuntimeError, match="not connected"):
        await waffle.update({"GREETING": "x"})


async def test_unreachable_database_is_a_clear_error() -> None:
    waffle = make_waffle("postgresql://postgres@127.0.0.1:9/none")
    with pytest.raises(StoreUnavailableError, match="settings database unavailable"):
        await waffle.start(watch=False)


async def test_failed_start_closes_what_it_opened(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url, watchtype="postgres")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        await waffle.start()
    assert waffle.health().last_error == "not started"
    with pytest.raises(RuntimeError, match="not connected"):
        await waffle.refresh()


async def test_history_pages_through_one_revision_of_many_keys(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "g", "THEME": "dark", "MAX_ITEMS": 3})
        seen: list[str] = []
        before: int | None = None
        while page := await waffle.history(before_id=before, limit=2):
            seen += [entry.key for entry in page]
            before = page[-1].id
        assert sorted(seen) == ["GREETING", "MAX_ITEMS", "THEME"]


async def test_committed_update_is_reported_even_if_applying_it_fails(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waffle, other = worker_pair(sqlite_url)
    async with waffle.connected(), other.connected():
        # another worker wrote revision 1: this one must read the store to apply its own
        await other.update({"THEME": "dark"})
        store = waffle._connected().store

        async def unavailable(revision: int) -> list[Any]:
            raise OSError("connection reset")

        with monkeypatch.context() as patch:
            patch.setattr(store, "changes_since", unavailable)
            with caplog.at_level(logging.WARNING, logger="quart_waffle"):
                assert await waffle.update({"GREETING": "committed"}) == 2
        assert "revision 2 is committed" in caplog.text
        assert waffle.revision == 0
        assert await waffle.refresh() == 2
        assert waffle.get("GREETING") == "committed"


async def test_unavailable_error_carries_no_statement_or_value(tmp_path: Path) -> None:
    waffle = make_waffle(f"sqlite:///{tmp_path}")  # a directory: SQLite cannot open it
    with pytest.raises(StoreUnavailableError) as caught:
        await waffle.start(watch=False)
    await sqlite_threads_stopped(within=5.0)
    message = str(caught.value)
    assert message.startswith("settings database unavailable: OperationalError: ")
    assert "\n" not in message
    assert "[SQL" not in message
