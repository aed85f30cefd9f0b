"""Channel faults that only a real misbehaving peer shows: a Redis server that
accepts but never replies (``SIGSTOP``), a subscription that died silently,
concurrent file notifiers, and error text that must not reach health."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import RedisServer, free_port
from quart_waffle.sync import Channel, Hint, SyncRunner, encode_hint
from quart_waffle.sync.file import FileListener, FileNotifier
from quart_waffle.sync.none import NullListener, NullNotifier
from quart_waffle.sync.redis import RedisListener, RedisNotifier
from tests.helpers import file_pair, serving, worker_pair
from tests.sync_helpers import until
from tests.test_sync_channels import revisions


@pytest.fixture(name="redis_server")
async def _redis_server() -> AsyncIterator[RedisServer]:
    """A private redis-server: these tests freeze it, never the shared one."""
    async with RedisServer() as server:
        yield server


def freeze(server: RedisServer, frozen: bool) -> None:
    """SIGSTOP (or SIGCONT) the server: its port still accepts, nothing replies."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


async def test_update_is_bounded_when_redis_never_replies(
    redis_server: RedisServer, sqlite_url: str
) -> None:
    a, b = worker_pair(
        sqlite_url, watchtype="redis", redis_url=redis_server.url, check_interval=0.5
    )
    async with serving(a, b):
        loop = asyncio.get_running_loop()
        freeze(redis_server, True)
        try:
            started = loop.time()
            revision = await asyncio.wait_for(a.update({"MAX_ITEMS": 61}), 15.0)
            assert loop.time() - started < 5.0 + 1.0  # the publish time limit, plus slack
            assert a.get("MAX_ITEMS") == 61
        finally:
            freeze(redis_server, False)
        await until(lambda: b.revision == revision, 5.0, "B did not converge after SIGCONT")
        await until(lambda: b.health().connected, 5.0, "B did not reconnect")
        await until(lambda: a.health().connected, 5.0, "A did not reconnect")
        revision = await a.update({"MAX_ITEMS": 62})
        await until(lambda: b.revision == revision, 2.0, "no message after SIGCONT")


async def test_a_frozen_redis_subscription_is_noticed(redis_server: RedisServer) -> None:
    name = f"waffle-test-{os.urandom(6).hex()}"
    channel = Channel(
        RedisListener(name, url=redis_server.url, timeout=0.5),
        RedisNotifier(name, url=redis_server.url, timeout=0.5),
    )

    async def catch_up() -> int:
        return 0

    runner = SyncRunner(channel, catch_up, lambda: 0, check_interval=0.3)
    await runner.start(watch=True)
    try:
        await until(lambda: runner.health().last_sync is not None, 2.0, "no periodic check")
        assert runner.health().connected
        freeze(redis_server, True)
        try:
            await until(lambda: not runner.health().connected, 3.0, "silent loss not noticed")
            assert runner.health().last_error is not None
        finally:
            freeze(redis_server, False)
        await until(
            lambda: runner.health().connected and runner.health().last_error is None,
            5.0,
            "did not recover after SIGCONT",
        )
    finally:
        await runner.stop()


async def test_redis_liveness_pong_is_not_a_hint(redis_server: RedisServer) -> None:
    name = f"waffle-test-{os.urandom(6).hex()}"
    a = RedisNotifier(name, url=redis_server.url, timeout=0.5)
    b = RedisListener(name, url=redis_server.url, timeout=0.5)
    await b.connect()
    try:
        for _ in range(3):  # each idle wait ends with a ping; its PONG is no payload
            assert await b.wait(0.05) == []
        await a.send(encode_hint(Hint(7, "a")))
        assert revisions(await b.wait(1.0)) == [7]
        assert await b.wait(0.05) == []
    finally:
        await a.close()
        await b.close()


async def test_file_older_hint_is_reported_not_a_lost_channel(tmp_path: Path) -> None:
    path = str(tmp_path / "waffle.revision")
    a, watcher = FileNotifier(path), FileListener(path, 0.01)
    await watcher.connect()
    await a.send(encode_hint(Hint(6, "a")))
    assert revisions(await watcher.wait(1.0)) == [6]
    # b read 4 before a replaced the file, then renamed its 5 over a's 6
    temporary = tmp_path / "late"
    temporary.write_text("5 b\n")
    os.replace(temporary, path)
    assert revisions(await watcher.wait(1.0)) == [5]  # the runner skips it: not newer
    await a.send(encode_hint(Hint(7, "a")))
    assert revisions(await watcher.wait(1.0)) == [7]
    await a.close()
    await watcher.close()


async def test_concurrent_file_notifiers_do_not_lose_the_channel(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "waffle.revision"
    a, b = file_pair(sqlite_url, path)
    with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
        async with serving(a, b):
            revision = await a.update({"MAX_ITEMS": 51})
            await until(lambda: b.revision == revision, 2.0, "no message")
            late = tmp_path / "late"
            late.write_text(f"{revision - 1} 0123456789abcdef\n")
            os.replace(late, path)
            await asyncio.sleep(0.3)  # several watch intervals
            health = b.health()
            assert health.connected
            assert health.last_error is None
            revision = await a.update({"MAX_ITEMS": 52})
            await until(lambda: b.revision == revision, 2.0, "no message after the late hint")
    assert [r.getMessage() for r in caplog.records] == []


async def test_health_error_is_the_type_and_a_short_first_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unreachable(NullListener):
        async def connect(self) -> None:
            raise ConnectionError("cannot reach redis://:s3cret@db.internal:6379/0")

    class Refusing(NullNotifier):
        async def send(self, payload: bytes) -> None:
            raise ConnectionError("publish to redis://waffle:p@ss@word@db.internal/0 failed")

    async def catch_up() -> int:
        raise RuntimeError(
            "(OperationalError) server closed the connection\n"
            "[SQL: UPDATE waffle_settings SET value=$1]\n"
            "[parameters: ('hunter2',)]"
        )

    unreachable = SyncRunner(
        Channel(Unreachable(), Refusing()), catch_up, lambda: 0, check_interval=60.0
    )
    failing = SyncRunner(
        Channel(NullListener(), NullNotifier()), catch_up, lambda: 0, check_interval=0.05
    )
    with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
        await unreachable.start(watch=True)
        await unreachable.notify(3)
        await failing.start(watch=True)
        try:
            await until(lambda: failing.health().last_error is not None, 2.0, "no catch-up")
        finally:
            await failing.stop()
            await unreachable.stop()
    errors = [unreachable.health().last_error, failing.health().last_error]
    assert errors == [
        "none channel unreachable: ConnectionError: cannot reach redis://***@db.internal:6379/0",
        "catch-up failed: RuntimeError: (OperationalError) server closed the connection",
    ]
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 3, logged
    assert "ConnectionError: publish to redis://***@db.internal/0 failed" in logged[1]
    assert all(
        secret not in text for secret in ("s3cret", "word@", "hunter2") for text in logged
    ), logged


@pytest.mark.parametrize("userinfo", [":s3cr@t", "waffle:s3cr@t", ":s3cret"])
async def test_a_redis_password_never_shows(
    userinfo: str, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Health, its JSON form and the warnings of a worker whose Redis is
    unreachable name where it tried, never the password (empty user, '@' in it)."""
    port = free_port()  # nothing listens there
    url = f"redis://{userinfo}@127.0.0.1:{port}/0"
    a, b = worker_pair(sqlite_url, watchtype="redis", redis_url=url, check_interval=0.2)
    with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
        async with serving(a, b):
            await a.update({"MAX_ITEMS": 63})  # the publish fails too: logged
            await until(lambda: b.revision == a.revision, 2.0, "no periodic check")
            health = b.health()
    assert health.last_error is not None
    assert f"redis://***@127.0.0.1:{port}/0" in health.last_error
    shown = [str(health.as_dict()), *(record.getMessage() for record in caplog.records)]
    assert any("publish" in text for text in shown), shown
    assert all("s3cr" not in text for text in shown), shown


async def test_file_left_by_an_earlier_database_does_not_silence_hints(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "waffle.revision"
    path.write_text("500 an-earlier-deployment\n")
    a, b = file_pair(sqlite_url, path)
    async with serving(a, b):
        revision = await a.update({"GREETING": "after a database reset"})
        assert revision == 1
        await until(lambda: b.revision == revision, 5.0, "hint never arrived")
        assert b.get("GREETING") == "after a database reset"
