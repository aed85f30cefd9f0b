"""The database leaves the hot path: no idle connection per worker, start-up
under "too many clients" retries instead of failing, and the periodic check
reads the channel's witness of the latest revision, going to the store only
on a mismatch (and every STORE_CHECK_EVERY-th time). Real PostgreSQL, Redis
and files."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from harness import POSTGRES_URL, REDIS_URL
from quart_waffle import QuartWaffle
from quart_waffle.sync import runner as runner_module
from tests.conftest import require
from tests.helpers import make_waffle
from tests.sync_helpers import store_reads, until


def deaf(waffle: QuartWaffle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``waffle``'s listener lose every message from now on."""
    listener = waffle._connected().sync.channel.listener

    async def nothing(max_wait: float) -> list[bytes]:
        await asyncio.sleep(max_wait)
        return []

    monkeypatch.setattr(listener, "wait", nothing)


@pytest.fixture(name="options", params=["file", "redis"])
def _options(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "watchtype": request.param,
        "check_interval": 0.1,
        "sync_key": "connections-test-key",
    }
    if request.param == "file":
        options["watcher_file"] = str(tmp_path / "waffle.revision")
    else:
        require("Redis")
        options["redis_url"] = REDIS_URL
        options["redis_channel"] = f"waffle-test-{os.urandom(6).hex()}"
    return options


@pytest.fixture(name="pair")
async def _pair(
    options: dict[str, Any], sqlite_url: str
) -> AsyncIterator[tuple[QuartWaffle, QuartWaffle]]:
    a, b = make_waffle(sqlite_url, **options), make_waffle(sqlite_url, **options)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        yield a, b


async def test_idle_checks_read_the_witness_not_the_store(
    pair: tuple[QuartWaffle, QuartWaffle], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    await a.update({"GREETING": "before"})
    await until(lambda: b.revision == a.revision, 2.0)
    calls = store_reads(b, monkeypatch)
    await asyncio.sleep(0.8)  # 8 checks of 0.1 s, fewer than STORE_CHECK_EVERY
    assert calls == []


async def test_a_lost_message_is_caught_by_the_witness(
    pair: tuple[QuartWaffle, QuartWaffle], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    deaf(b, monkeypatch)
    await asyncio.sleep(0.3)  # the wait already running (0.1 s at most) is over
    calls = store_reads(b, monkeypatch)
    revision = await a.update({"GREETING": "lost on the way"})
    # within a check or two (0.1 s each), long before the 12th check goes to the store
    await until(lambda: b.revision == revision, 0.6, f"B at {b.revision}")
    assert b.get("GREETING") == "lost on the way"
    assert calls == [0]


async def test_a_change_the_witness_never_saw_is_caught_by_the_store_check(
    pair: tuple[QuartWaffle, QuartWaffle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer whose message (and so the witness) failed after its commit:
    every STORE_CHECK_EVERY-th check reads the store all the same."""
    a, b = pair
    monkeypatch.setattr(runner_module, "STORE_CHECK_EVERY", 4)
    await a._connected().store.write({"GREETING": '"never announced"'})
    await until(lambda: b.revision == 1, 2.0, f"B at {b.revision}")
    assert b.get("GREETING") == "never announced"


# PostgreSQL connections.


@pytest.fixture(name="limited_url")
async def _limited_url(postgres_url: str) -> AsyncIterator[str]:
    """``postgres_url`` through a role allowed two connections at a time."""
    role = f"waffle_limited_{uuid.uuid4().hex[:8]}"
    database = urlsplit(postgres_url).path.lstrip("/")
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
        await admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        parts = urlsplit(postgres_url)
        yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def connections_of(url: str) -> int:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        role = urlsplit(url).username
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role
        )
        return count
    finally:
        await admin.close()


async def test_workers_start_under_a_connection_limit_and_hold_no_idle_connection(
    limited_url: str,
) -> None:
    """Eight workers start at once through a role allowed two connections:
    each waits (with jitter) for a free connection instead of failing, then
    holds none while idle; updates and catch-ups still work."""
    workers = [make_waffle(limited_url) for _ in range(8)]
    contexts = [worker.connected() for worker in workers]
    await asyncio.gather(*(context.__aenter__() for context in contexts))
    try:
        assert await connections_of(limited_url) == 0
        revision = await workers[0].update({"GREETING": "limited"})
        assert [await worker.refresh() for worker in workers] == [revision] * 8
        assert await connections_of(limited_url) == 0
    finally:
        await asyncio.gather(*(context.__aexit__(None, None, None) for context in contexts))
