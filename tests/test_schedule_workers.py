"""Scheduled changes with real worker processes (``hypercorn -w 3``) on real
PostgreSQL: steps due at the same moment are written once each,
and steps that fell due while every worker was stopped are run once the
deployment starts again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import Deployment
from quart_waffle import QuartWaffle
from tests.helpers import make_waffle

WORKERS = 3


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def rows(waffle: QuartWaffle) -> list[tuple[int, str, str]]:
    """History as (revision, key, actor), oldest first."""
    entries = await waffle.history(limit=1000)
    return [(entry.revision, entry.key, entry.actor) for entry in reversed(entries)]


async def states(waffle: QuartWaffle) -> dict[int, str]:
    return {entry.id: entry.state for entry in await waffle.scheduled()}


async def test_once_across_workers_and_a_restart(postgres_url: str, tmp_path: Path) -> None:
    """On PostgreSQL, as several hosts share it (SQLite's racing workers:
    test_schedule.py), to keep the file within its time budget."""
    database_url = postgres_url
    env = {
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_WATCHTYPE": "none",
        "WAFFLE_CHECK_INTERVAL": "1",
        "WAFFLE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    log = tmp_path / "hypercorn.log"
    deployment = Deployment(env, log, workers=WORKERS, app="tests.sync_app:app")
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await deployment.start()
        try:
            pids = await deployment.worker_pids()
            # every worker knows these before they are due (its check each second)
            at = soon(3)
            first = await waffle.schedule({"MAX_ITEMS": 77}, at=at, actor="ops")
            # Its end comes last: after the three changes due at `at`, however busy the host.
            second = await waffle.schedule(
                {"GREETING": "Back soon"}, at=at, until=at + timedelta(seconds=3), actor="ops"
            )
            third = await waffle.schedule({"THEME": "dark"}, at=at, actor="ops")
            await deployment.until_all_serve(
                lambda who: (
                    who["settings"]["MAX_ITEMS"] == 77
                    and who["settings"]["THEME"] == "dark"
                    and who["settings"]["GREETING"] == "Hello, world!"
                    and who["revision"] == 4
                ),
                pids,
                within=20,
            )
        finally:
            await deployment.stop()
        assert await states(waffle) == {
            first.id: "done",
            second.id: "reverted",
            third.id: "done",
        }
        history = await rows(waffle)
        assert sorted(key for _revision, key, _actor in history) == [
            "GREETING",
            "GREETING",
            "MAX_ITEMS",
            "THEME",
        ]
        assert len({revision for revision, _key, _actor in history}) == 4
        assert history[-1] == (4, "GREETING", f"schedule:{second.id} by ops")

        # every worker stopped: these fall due (change and end) meanwhile
        fourth = await waffle.schedule({"MAINTENANCE": True}, at=soon(0.3), actor="ops")
        fifth = await waffle.schedule({"MAX_ITEMS": 5}, at=soon(0.3), until=soon(0.6))
        await waffle.refresh()
        deployment = Deployment(env, log, workers=WORKERS, app="tests.sync_app:app")
        await deployment.start()
        try:
            pids = await deployment.worker_pids()
            await deployment.until_all_serve(
                lambda who: (
                    who["settings"]["MAINTENANCE"] is True
                    and who["settings"]["MAX_ITEMS"] == 77
                    and who["revision"] == 7
                ),
                pids,
                within=20,
            )
        finally:
            await deployment.stop()
        assert (await states(waffle))[fourth.id] == "done"
        assert (await states(waffle))[fifth.id] == "reverted"
        history = await rows(waffle)
        assert len(history) == 7
        assert sorted(key for _revision, key, _actor in history[4:]) == [
            "MAINTENANCE",
            "MAX_ITEMS",
            "MAX_ITEMS",
        ]
        assert len({revision for revision, _key, _actor in history}) == 7
