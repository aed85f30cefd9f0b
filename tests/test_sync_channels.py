"""The channels and the runner, in one process: two QuartWaffle "workers" on
one store, each with its own sync task, against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from harness import REDIS_URL
from quart_waffle import ConfigurationError, QuartWaffle
from quart_waffle.store import create_engine
from quart_waffle.sync import (
    ChannelKind,
    ChannelLostError,
    ChannelOptions,
    Hint,
    ListenerABC,
    SyncRunner,
    decode_hint,
    encode_hint,
    make_channel,
    open_channel,
    open_notifier,
    register_channel,
)
from quart_waffle.sync import runner as runner_module
from quart_waffle.sync.file import FileListener, FileNotifier
from quart_waffle.sync.none import NullListener, NullNotifier
from tests.conftest import require
from tests.helpers import file_pair, make_waffle, serving, worker_pair
from tests.sync_helpers import channel_options, until, worker

CHANNELS = ["file", "redis", "postgres"]


@pytest.fixture(name="options", params=CHANNELS)
def _options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Two workers on one store, one per channel."""
    return channel_options(request, tmp_path, request.param)


@pytest.fixture(name="pair")
async def _pair(options: dict[str, Any]) -> AsyncIterator[tuple[QuartWaffle, QuartWaffle]]:
    """Two serving workers, A and B."""
    a, b = worker(options), worker(options)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        yield a, b


async def test_update_reaches_the_other_worker_by_message(
    pair: tuple[QuartWaffle, QuartWaffle],
) -> None:
    a, b = pair
    for number in range(3):
        revision = await a.update({"MAX_ITEMS": 30 + number})
        await until(lambda: b.revision >= a.revision, 2.0, f"B at {b.revision}, not {revision}")
        assert b.get("MAX_ITEMS") == 30 + number
    health = b.health()
    assert health.connected
    assert health.last_error is None
    assert health.applied_revision == revision
    assert health.last_sync is not None
    assert health.as_dict()["channel"] == b.config.watchtype if b.config else False


def revisions(payloads: list[bytes]) -> list[int]:
    """The revisions of the hints among ``payloads``."""
    return [hint.revision for hint in map(decode_hint, payloads) if hint is not None]


async def test_a_burst_is_a_few_wakeups(options: dict[str, Any]) -> None:
    config = worker(options).config
    engine = create_engine(config.database_url)
    a, b = make_channel(config, engine), make_channel(config, engine)
    try:
        await b.listener.connect()
        for revision in range(1, 201):
            await a.notifier.send(encode_hint(Hint(revision, "a")))
        wakeups, hinted = 0, 0
        while hinted < 200:  # a burst is a few catch-ups, not 200
            payloads = await b.listener.wait(2.0)
            assert payloads, "the burst stopped short"
            wakeups, hinted = wakeups + 1, max(revisions(payloads))
        assert wakeups <= 5
        assert await b.listener.wait(0.1) == []
    finally:
        await a.close()
        await b.close()
        await engine.dispose()


async def test_own_hints_are_skipped_by_the_runner(options: dict[str, Any]) -> None:
    """The channel delivers a worker's hints to its own listener too; the
    runner, the one place that reads them, skips them."""
    config = worker(options).config
    engine = create_engine(config.database_url)
    catch_ups = {"a": 0, "b": 0}
    served = {"a": 0, "b": 0}

    def runner(name: str) -> SyncRunner:
        async def catch_up() -> int:
            catch_ups[name] += 1
            served[name] = 1  # the store holds revision 1
            return 1

        return SyncRunner(
            make_channel(config, engine), catch_up, lambda: served[name], check_interval=60.0
        )

    a, b = runner("a"), runner("b")
    await a.start(watch=True)
    await b.start(watch=True)
    try:
        await a.notify(1)
        await until(lambda: catch_ups["b"] == 1, 2.0, "B never caught up")
        await asyncio.sleep(0.2)
        assert catch_ups == {"a": 0, "b": 1}
        assert a.health().hinted_revision is None
        assert b.health().hinted_revision == 1
    finally:
        await a.stop()
        await b.stop()
        await engine.dispose()


async def test_a_script_notifies_without_subscribing(sqlite_url: str) -> None:
    """``connected()`` (the CLI, scripts) opens a notifier and no listener."""
    require("Redis")
    options = {"watchtype": "redis", "redis_url": REDIS_URL, "check_interval": 60.0}
    options["redis_channel"] = name = f"waffle-test-{os.urandom(6).hex()}"
    worker, script = worker_pair(sqlite_url, **options)
    probe = Redis.from_url(REDIS_URL)
    try:
        async with serving(worker), script.connected():
            assert await probe.pubsub_numsub(name) == [(name.encode(), 1)]  # the worker's
            revision = await script.update({"GREETING": "from a script"})
            await until(lambda: worker.revision == revision, 2.0, "the hint never arrived")
            assert script.health().connected is False
    finally:
        await probe.aclose()


async def test_lost_publish_converges_by_the_periodic_check(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write never announced (nor seen by the channel's witness) is found
    by the periodic check that goes to the store whatever the witness says."""
    monkeypatch.setattr(runner_module, "STORE_CHECK_EVERY", 2)
    a, b = worker(options, check_interval=0.3), worker(options, check_interval=0.3)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        store = a._connected().store
        result = await store.write({"GREETING": '"unannounced"'})
        assert result.revision is not None
        waited = await until(lambda: b.revision == result.revision, 2.0, "B missed the write")
        await until(lambda: a.revision == result.revision, 2.0, "A missed the write")
        assert waited < 1.0
        assert b.get("GREETING") == "unannounced"


async def test_clean_shutdown_leaves_no_task(options: dict[str, Any]) -> None:
    before = asyncio.all_tasks()
    waffle = worker(options)
    assert waffle.app is not None
    async with waffle.app.test_app():
        assert {task.get_name() for task in asyncio.all_tasks() - before} >= {"quart-waffle-sync"}
        await waffle.update({"THEME": "dark"})
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    assert waffle.health().last_error == "not started"


async def test_file_channel_survives_deletion_and_replacement(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = tmp_path / "deep" / "dir" / "waffle.revision"
    a, b = file_pair(sqlite_url, path)
    async with serving(a, b):
        assert path.exists()
        store = a._connected().store
        # deleted, with a change that was never announced: B re-watches and catches up
        revision = (await store.write({"MAX_ITEMS": "41"})).revision
        path.unlink()
        await until(lambda: b.revision == revision, 2.0, "deleted file: no catch-up")
        await until(path.exists, 2.0, "file not recreated")
        # replaced by something that is not a hint
        revision = (await store.write({"MAX_ITEMS": "42"})).revision
        replacement = tmp_path / "replacement"
        replacement.write_text("garbage\n")
        os.replace(replacement, path)
        await until(lambda: b.revision == revision, 2.0, "replaced file: no catch-up")
        # and messages flow again afterwards
        revision = await a.update({"MAX_ITEMS": 43})
        await until(lambda: b.revision == revision, 2.0, "no message after recovery")
        assert b.health().connected


async def test_file_hints_inside_one_timestamp_tick_are_told_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "waffle.revision")
    a, b, watcher = FileNotifier(path), FileNotifier(path), FileListener(path, 0.01)
    await watcher.connect()
    for revision in range(1, 51):
        await (a if revision % 2 else b).send(encode_hint(Hint(revision, "ab"[revision % 2])))
        assert revisions(await watcher.wait(1.0)) == [revision]
    await a.send(encode_hint(Hint(60, "a")))
    await b.send(encode_hint(Hint(55, "b")))  # late and older: reported all the same
    heard = set(revisions(await watcher.wait(1.0)))
    while payloads := await watcher.wait(0.05):
        heard.update(revisions(payloads))
    assert heard in ({55}, {60, 55})
    for end in (a, b, watcher):
        await end.close()


async def test_file_channel_loses_a_deleted_file(tmp_path: Path) -> None:
    listener = FileListener(str(tmp_path / "waffle.revision"), 0.01)
    await listener.connect()
    os.unlink(listener.path)
    with pytest.raises(ChannelLostError):
        await listener.wait(1.0)
    await listener.close()


def test_channels_are_registered_by_name_and_imported_when_chosen() -> None:
    register_channel("test-null", ChannelKind(listener=_null, notifier=_null_notifier))
    channel = open_channel("test-null", ChannelOptions())
    assert isinstance(channel.listener, NullListener)
    assert channel.name == "none"
    with pytest.raises(ConfigurationError, match="unknown channel 'nats'"):
        open_notifier("nats", ChannelOptions())
    script = (
        "import sys; from quart_waffle.sync import ChannelOptions, open_channel;"
        " open_channel('file', ChannelOptions());"
        " print(sorted({'redis', 'asyncpg', 'quart'} & set(sys.modules)))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"


def _null(_options: ChannelOptions, _engine: object) -> NullListener:
    return NullListener()


def _null_notifier(_options: ChannelOptions, _engine: object) -> NullNotifier:
    return NullNotifier()


async def test_postgres_channel_needs_a_postgres_store(tmp_path: Path, sqlite_url: str) -> None:
    config = make_waffle(sqlite_url, watchtype="postgres").config
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(ConfigurationError, match="PostgreSQL"):
            make_channel(config, engine)
    finally:
        await engine.dispose()


async def test_redis_without_the_package_falls_back_to_the_file(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sqlite_url: str
) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "redis"] + ["redis"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "quart_waffle.sync.redis", raising=False)
    config = make_waffle(sqlite_url, watchtype="redis").config
    engine = create_engine(sqlite_url)
    try:
        with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
            channel = make_channel(config, engine)
    finally:
        await engine.dispose()
    assert isinstance(channel.listener, FileListener)
    assert isinstance(channel.notifier, FileNotifier)
    assert "FALLING BACK" in caplog.text


async def test_none_channel(sqlite_url: str) -> None:
    config = make_waffle(sqlite_url).config
    engine = create_engine(sqlite_url)
    channel = make_channel(config, engine)
    await engine.dispose()
    assert isinstance(channel.listener, NullListener)
    assert isinstance(channel.listener, ListenerABC)
    assert isinstance(channel.notifier, NullNotifier)


async def test_postgres_listener_killed_reconnects_and_catches_up(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"database_url": postgres_url, "watchtype": "postgres", "check_interval": 60.0}
    a, b = worker(options), worker(options)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        admin = await asyncpg.connect(postgres_url.replace("postgresql://", "postgres://", 1))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await admin.close()
        assert killed == 2
        store = a._connected().store
        revision = (await store.write({"RATE": "2.5"})).revision
        await until(lambda: b.revision == revision, 3.0, "B did not catch up after reconnecting")
        await until(lambda: b.health().connected and b.health().last_error is None, 3.0)
        revision = await a.update({"RATE": 3.5})
        await until(lambda: b.revision == revision, 2.0, "no message after reconnection")


async def test_unreachable_redis_serves_on_and_recovers(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from harness import RedisServer

    async with RedisServer() as redis_server:
        a, b = worker_pair(
            sqlite_url, watchtype="redis", redis_url=redis_server.url, check_interval=0.5
        )
        with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
            async with serving(a, b):
                await redis_server.stop()
                await until(lambda: not b.health().connected, 2.0, "outage not noticed")
                revision = await a.update({"MAX_ITEMS": 77})  # the publish fails: logged
                await until(lambda: b.revision == revision, 2.0, "no periodic check in outage")
                await asyncio.sleep(1.0)  # several retries, logged once
                await redis_server.start()
                await until(lambda: b.health().connected, 5.0, "did not reconnect")
                revision = await a.update({"MAX_ITEMS": 78})
                await until(lambda: b.revision == revision, 2.0, "no message after restart")
        lost = [r for r in caplog.records if "channel lost" in r.getMessage()]
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len([r for r in lost if "redis" in r.getMessage()]) <= 2  # once per worker
        assert unreachable == []  # retries after the first report stay quiet
