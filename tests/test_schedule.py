"""Scheduled and temporary changes from the Python API, on real SQLite and
PostgreSQL: applied once, put back at their end, skipped on conflict,
cancelled, and bad input refused with nothing stored."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from quart_waffle import QuartWaffle
from quart_waffle.errors import InvalidValueError
from quart_waffle.schedule import NotCancellableError, ScheduledChange, _apply, _revert, run_due
from quart_waffle.store import schedule_table
from tests.helpers import CONFS, make_waffle, serving


@pytest.fixture(name="served")
async def _served(database_url: str) -> AsyncIterator[QuartWaffle]:
    waffle = make_waffle(database_url, check_interval=0.2)
    async with serving(waffle):
        yield waffle


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def until_true(check: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def looked_once(*workers: QuartWaffle) -> None:
    """Until each worker's sync task has made its start-up look at the schedule:
    one made later, on a loaded machine, would find the test's entries and run
    them itself, in the middle of a test that runs them by hand."""

    async def looked() -> bool:
        scheduled = [worker._connected().sync._timers[0] for worker in workers]  # the tick
        return all(math.isfinite(timer.due()) for timer in scheduled)

    await until_true(looked)


async def entry(waffle: QuartWaffle, entry_id: int) -> ScheduledChange:
    return next(found for found in await waffle.scheduled() if found.id == entry_id)


async def state_is(waffle: QuartWaffle, entry_id: int, state: str) -> None:
    async def check() -> bool:
        return (await entry(waffle, entry_id)).state == state

    await until_true(check)


async def test_temporary_change_applied_then_put_back(served: QuartWaffle) -> None:
    waffle = served
    before = await waffle.update({"MAX_ITEMS": 7, "API_KEY": "old-secret"}, actor="alice")
    scheduled = await waffle.schedule(
        {"MAX_ITEMS": 99, "MAINTENANCE": True, "API_KEY": "new-secret"},
        at=soon(0.5),
        until=soon(1.5),
        reason="night work",
        actor="ops",
    )
    assert scheduled.state == "pending"
    assert scheduled.values == {"MAX_ITEMS": 99, "MAINTENANCE": True, "API_KEY": "********"}
    await state_is(waffle, scheduled.id, "applied")
    assert waffle.get("MAX_ITEMS") == 99
    assert waffle.get("API_KEY") == "new-secret"
    applied = await entry(waffle, scheduled.id)
    assert applied.applied_revision == before + 1
    await state_is(waffle, scheduled.id, "reverted")
    assert waffle.get("MAX_ITEMS") == 7
    assert waffle.get("API_KEY") == "old-secret"
    assert waffle.is_default("MAINTENANCE")
    history = await waffle.history()
    assert [(row.revision, row.actor) for row in history[:3]] == [
        (before + 2, f"schedule:{scheduled.id} by ops")
    ] * 3
    assert history[0].reason == f"end of scheduled change {scheduled.id}: night work"
    assert {row.reason for row in history[3:6]} == {"night work"}
    assert (await entry(waffle, scheduled.id)).reverted_revision == before + 2


async def test_end_skipped_when_the_key_changed_since(served: QuartWaffle) -> None:
    waffle = served
    skipped = await waffle.schedule({"MAX_ITEMS": 50}, at=soon(0.3), until=soon(1.5))
    forced = await waffle.schedule({"THEME": "dark"}, at=soon(0.3), until=soon(1.5), force=True)
    await state_is(waffle, skipped.id, "applied")
    await state_is(waffle, forced.id, "applied")
    await waffle.update({"MAX_ITEMS": 60, "THEME": "dark"}, actor="bob")
    await waffle.update({"THEME": "light"}, actor="bob")
    await waffle.update({"THEME": "dark"}, actor="bob")
    await state_is(waffle, skipped.id, "conflict")
    await state_is(waffle, forced.id, "reverted")
    ended = await entry(waffle, skipped.id)
    assert "MAX_ITEMS" in ended.detail
    assert ended.reverted_revision is None
    assert waffle.get("MAX_ITEMS") == 60  # bob's value stays
    assert waffle.is_default("THEME")  # put back over bob's, as forced


async def test_cancel(served: QuartWaffle) -> None:
    waffle = served
    pending = await waffle.schedule({"MAX_ITEMS": 40}, at=soon(0.8), actor="ops")
    temporary = await waffle.schedule({"GREETING": "Hi"}, at=soon(0.2), until=soon(60))
    cancelled = await waffle.cancel_scheduled(pending.id, actor="carol")
    assert (cancelled.state, cancelled.detail) == ("cancelled", "cancelled by carol")
    await state_is(waffle, temporary.id, "applied")
    await waffle.cancel_scheduled(temporary.id)  # its end: the value stays
    await asyncio.sleep(1.2)
    assert waffle.get("MAX_ITEMS") == 20
    assert waffle.get("GREETING") == "Hi"
    assert [row.key for row in await waffle.history()] == ["GREETING"]
    for entry_id, state in ((pending.id, "cancelled"), (999, None)):
        with pytest.raises(NotCancellableError) as refused:
            await waffle.cancel_scheduled(entry_id)
        assert refused.value.state == state


async def test_bad_input_stores_nothing(served: QuartWaffle) -> None:
    waffle = served
    naive = datetime.now() + timedelta(hours=1)
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"MAX_ITEMS": 501}, {"at": soon(60)}, "MAX_ITEMS"),
        ({"NOPE": 1}, {"at": soon(60)}, "NOPE"),
        ({}, {"at": soon(60)}, ""),
        ({"MAX_ITEMS": 5}, {"at": soon(-60)}, "at"),
        ({"MAX_ITEMS": 5}, {"at": naive}, "at"),
        ({"MAX_ITEMS": 5}, {"at": "tomorrow"}, "at"),
        ({"MAX_ITEMS": 5}, {"at": soon(60), "until": soon(30)}, "until"),
        ({"MAX_ITEMS": 5}, {"at": soon(60), "actor": "a\nb"}, "actor"),
        ({"MAX_ITEMS": 5}, {"at": soon(60), "reason": "x" * 501}, "reason"),
    ]
    for values, options, field in cases:
        with pytest.raises(InvalidValueError) as refused:
            await waffle.schedule(values, **options)
        assert field in refused.value.errors, (values, options)
    assert await waffle.scheduled() == []


async def test_each_step_written_once_by_racing_workers(database_url: str) -> None:
    """Four workers run the same due steps at the same moment."""
    workers = [make_waffle(database_url, check_interval=3600) for _ in range(4)]
    async with serving(*workers):
        await looked_once(*workers)
        first = workers[0]
        entries = [
            await first.schedule(values, at=soon(0.3), until=soon(0.6))
            for values in ({"MAX_ITEMS": 30}, {"GREETING": "Hi"}, {"THEME": "dark"})
        ]
        await asyncio.sleep(0.7)
        for _ in range(2):  # the change, then its end (both due)
            await asyncio.gather(*(run_due(worker) for worker in workers))
        history = await first.history(limit=100)
        # each entry: one revision at its time, one at its end
        assert len(history) == 6
        assert len({row.revision for row in history}) == 6
        assert {found.state for found in await first.scheduled()} == {"reverted"}
        assert [found.id for found in entries] == sorted(found.id for found in entries)


async def test_a_late_worker_writes_nothing(database_url: str) -> None:
    """A worker that read an entry as due, then lost the race to another,
    must not write it again over a change made in between: the claim in the
    write's transaction refuses it (the same values written twice would be
    a no-op, so the race itself cannot show this)."""
    early, late = (make_waffle(database_url, check_interval=3600) for _ in range(2))
    async with serving(early, late):
        await looked_once(early, late)
        added = await early.schedule({"MAX_ITEMS": 30}, at=soon(0.2), until=soon(0.4))
        await asyncio.sleep(0.5)
        engine = late._connected().store.engine
        async with engine.connect() as connection:
            query = select(schedule_table).where(schedule_table.c.id == added.id)
            stale = (await connection.execute(query)).one()  # pending, as the late worker saw it
        await run_due(early)  # the change
        await early.update({"MAX_ITEMS": 60}, actor="bob")
        await _apply(late, stale, "late")
        assert (await entry(early, added.id)).state == "applied"
        await run_due(early)  # its end: bob's value stays
        async with engine.connect() as connection:
            applied = (await connection.execute(query)).one()
        await _revert(late, applied, "late")
        assert (await entry(early, added.id)).state == "conflict"
        assert [row.actor for row in await early.history()] == ["bob", f"schedule:{added.id}"]
        await late.refresh()
        assert late.get("MAX_ITEMS") == 60


async def test_a_failing_look_is_logged_once(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A schedule that cannot be read (a table dropped, say) warns once per
    outage, not at every periodic check; the worker keeps serving."""
    waffle = make_waffle(sqlite_url, check_interval=0.1)
    async with serving(waffle):
        store = waffle._connected().store
        async with store.engine.begin() as connection:
            await connection.execute(text("DROP TABLE waffle_schedule"))
        await asyncio.sleep(1.0)

        def failures() -> list[str]:
            return [r.getMessage() for r in caplog.records if "scheduled work" in r.getMessage()]

        assert len(failures()) == 1
        assert failures()[0].startswith("scheduled work failed, retrying")
        await store.create_tables()

        async def recovered() -> bool:
            return failures()[-1:] == ["scheduled work recovered"]

        await until_true(recovered)
        assert len(failures()) == 2


async def test_a_value_that_no_longer_fits_fails(sqlite_url: str) -> None:
    """A release that narrowed a declaration meanwhile: the step writes
    nothing and the entry says why."""
    old = make_waffle(sqlite_url, check_interval=3600)
    narrowed = {**CONFS, "MAX_ITEMS": {"default": 5, "min": 1, "max": 10}}
    new = make_waffle(sqlite_url, confs=narrowed, check_interval=3600)
    async with serving(old, new):
        added = await old.schedule({"MAX_ITEMS": 300, "THEME": "dark"}, at=soon(0.2))
        await asyncio.sleep(0.3)
        await run_due(new)
        failed = await entry(new, added.id)
        assert failed.state == "failed"
        assert "MAX_ITEMS" in failed.detail
        assert await new.history() == []
        await run_due(old)  # nothing left to run
        assert await old.history() == []
