"""Presence in one process, over every backend (Redis hash, files beside the
watcher file, the waffle_presence table on PostgreSQL and SQLite): each
serving worker is listed with what it serves, a write that waits counts them,
a clean shutdown leaves the view at once, an idle worker writes once per
heartbeat, a record never holds a credential, and bad ``wait``/``timeout``
input is refused before anything is stored."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from quart_waffle.errors import InvalidValueError, StoreUnavailableError
from quart_waffle.fleet import Fleet, PresenceRecord, bounds_for, judge, reporter
from tests.helpers import ADMIN_TOKEN, serving
from tests.sync_helpers import channel_options, until, worker

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(name="options", params=["redis", "file", "postgres", "none"])
def _options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "none":
        # no channel: the others apply a change at their periodic check
        url = request.getfixturevalue("sqlite_url")
        return {"watchtype": "none", "database_url": url, "check_interval": 0.5}
    return channel_options(request, tmp_path, request.param)


async def fleet_of(waffle: QuartWaffle, within: float, check: Any) -> Fleet:
    """Poll ``waffle.fleet()`` until ``check(fleet)``."""
    answer: list[Fleet] = []

    async def read() -> None:
        answer[:] = [await waffle.fleet()]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await read()
        if check(answer[0]):
            return answer[0]
        if loop.time() > deadline:
            pytest.fail(f"not within {within} s: {answer[0].as_dict()}")
        await asyncio.sleep(0.02)


def hold_writes(
    waffle: QuartWaffle, monkeypatch: pytest.MonkeyPatch, seconds: float
) -> tuple[asyncio.Event, asyncio.Event]:
    """Until ``released`` is set, each presence write of ``waffle`` sets
    ``held``, then waits ``seconds`` before it writes: (held, released)."""
    backend = waffle._connected().fleet.backend
    publish, held, released = backend.publish, asyncio.Event(), asyncio.Event()

    async def hold(record: PresenceRecord) -> None:
        if not released.is_set():
            held.set()
            await asyncio.sleep(seconds)
        await publish(record)

    monkeypatch.setattr(backend, "publish", hold)
    return held, released


async def test_each_worker_listed_and_acknowledged(options: dict[str, Any]) -> None:
    a = worker(options, host_id="host-a", heartbeat_interval=0.2, version="1.2.3")
    b = worker(options, host_id="host-b", heartbeat_interval=0.2)
    async with serving(a):
        async with serving(b):
            fleet = await fleet_of(a, 5, lambda f: len(f.workers) == 2)
            assert [(v.record.host, v.record.pid) for v in fleet.workers] == [
                ("host-a", os.getpid()),
                ("host-b", os.getpid()),
            ]
            assert {v.state for v in fleet.workers} == {"ok"}
            assert fleet.workers[0].record.version == "1.2.3"
            assert fleet.workers[0].record.channel == options["watchtype"]

            ack = await a.update({"MAX_ITEMS": 42}, wait=5)
            assert ack.complete, ack.text
            assert (ack.applied, ack.expected, ack.revision) == (2, 2, a.revision)
            assert ack.text.startswith("applied by 2 of 2 workers in ")
            assert b.revision == ack.revision
            fleet = await b.fleet()  # as stored: the writer's record too
            assert {v.record.revision for v in fleet.workers} == {ack.revision}
            assert fleet.head == ack.revision
        # b shut down cleanly: its record is gone at once, not after gone_after
        fleet = await a.fleet()
        assert [v.record.host for v in fleet.workers] == ["host-a"]


async def test_no_record_from_before_a_change_lands_after_its_ack(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's heartbeat composed before its change and slow to land
    (a loaded machine) is stored before the ack returns, and its record
    saying the new revision after it: read once right after the ack, every
    stored record carries the revision."""
    a = worker(options, host_id="host-a", heartbeat_interval=0.2)
    b = worker(options, host_id="host-b", heartbeat_interval=0.2)
    async with serving(a, b):
        await fleet_of(b, 5, lambda f: len(f.workers) == 2)
        held, released = hold_writes(a, monkeypatch, 1.0)
        await asyncio.wait_for(held.wait(), 5)
        released.set()  # that one write only, composed before the change
        ack = await a.update({"MAX_ITEMS": 42}, wait=5)
        assert ack.complete, ack.text
        fleet = await b.fleet()
        assert {v.record.host: v.record.revision for v in fleet.workers} == {
            "host-a": ack.revision,
            "host-b": ack.revision,
        }


async def test_idle_worker_writes_once_per_heartbeat(options: dict[str, Any]) -> None:
    waffle = worker(options, heartbeat_interval=0.25)
    default = worker(options)  # the backend's own interval: 5 s, or 60 in the database
    async with serving(waffle, default):
        backend = waffle._connected().fleet.backend
        slow = default._connected().fleet.backend
        await until(lambda: backend.writes >= 1 and slow.writes >= 1, 5, "first records")
        first, first_slow = backend.writes, slow.writes
        await asyncio.sleep(1.5)
        # 1.5 s at one write per 0.25 s: about 6, never one per look
        assert 3 <= backend.writes - first <= 8
        assert slow.writes == first_slow


async def stored_heartbeat(reader: QuartWaffle, worker_id: str) -> float:
    """The heartbeat of ``worker_id``'s record as the presence store holds it."""
    fleet = await reader.fleet()
    return next(view.record.heartbeat for view in fleet.workers if view.record.id == worker_id)


async def heartbeats(reader: QuartWaffle, worker_id: str, count: int) -> None:
    """Until ``count`` newer records of ``worker_id`` were stored, one after another."""
    for _ in range(count):
        last = await stored_heartbeat(reader, worker_id)

        def newer(fleet: Fleet, last: float = last) -> bool:
            return any(
                view.record.id == worker_id and view.record.heartbeat > last
                for view in fleet.workers
            )

        await fleet_of(reader, 5, newer)


@pytest.mark.parametrize("watchtype", ["redis", "file"])
async def test_one_task_syncs_and_heartbeats(
    watchtype: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A serving worker runs one background task, the sync task, and its
    presence heartbeats from it while changes keep coming; none is left
    after a clean shutdown."""
    options = channel_options(request, tmp_path, watchtype)
    before = asyncio.all_tasks()
    a = worker(options, heartbeat_interval=0.1)
    b = worker(options, heartbeat_interval=0.1)
    async with serving(a):
        started = asyncio.all_tasks() - before
        ours = [task.get_name() for task in started if task.get_name().startswith("quart-waffle")]
        assert ours == ["quart-waffle-sync"]
        # besides ours, only the app's own serving task (the test's lifespan)
        others = {getattr(task.get_coro(), "__qualname__", "") for task in started} - {
            "SyncRunner._run"
        }
        assert others == {"Quart.__call__"}
        async with serving(b):
            me = a._connected().fleet.identity.id
            for value in (11, 12, 13):
                await b.update({"MAX_ITEMS": value})
                await until(lambda: a.revision == b.revision, 5, "change not applied")
                await heartbeats(b, me, 2)
            ack = await b.update({"MAX_ITEMS": 14}, wait=5)
            assert ack.complete, ack.text
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


async def test_a_hung_presence_store_holds_no_message_long(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A presence write that never returns is given up after
    ``PUBLISH_TIMEOUT`` (shortened here) and retried: the sync task, which
    makes it, applies every change meanwhile, and presence's outage is
    logged at info, once, as is its recovery."""
    monkeypatch.setattr(reporter, "PUBLISH_TIMEOUT", 0.2)
    options = channel_options(request, tmp_path, "file")
    a = worker(options, heartbeat_interval=0.1)
    b = worker(options)
    async with serving(a, b):
        backend = a._connected().fleet.backend
        hung, released = hold_writes(a, monkeypatch, 3600)
        with caplog.at_level(logging.INFO, logger="quart_waffle"):
            await asyncio.wait_for(hung.wait(), 5)
            for value in (21, 22, 23):
                await b.update({"MAX_ITEMS": value})
                await until(lambda: a.revision == b.revision, 5, "a hung write held the sync task")
            assert a.health().last_error is None
            written = backend.writes
            released.set()
            await until(lambda: backend.writes > written, 5, "no record after the store came back")

            def presence() -> list[tuple[int, str]]:
                logged = [(r.levelno, r.getMessage()) for r in caplog.records]
                return [(level, text) for level, text in logged if "presence" in text]

            await until(lambda: len(presence()) == 2, 5, "recovery not logged")
    assert presence() == [
        (logging.INFO, "file presence failed, retrying: TimeoutError"),
        (logging.INFO, "file presence recovered"),
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_failing_sync_still_heartbeats(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store fails every catch-up of one worker: it warns once, its
    record says why, and it keeps heartbeating from the same task; once the
    store answers it catches up, and says so once."""
    options = channel_options(request, tmp_path, "file")  # no sync key: catch-ups
    a = worker(options, heartbeat_interval=0.1)
    b = worker(options, heartbeat_interval=0.1)
    async with serving(a, b):
        store = a._connected().store
        changes_since, down = store.changes_since, asyncio.Event()

        async def failing(revision: int) -> Any:
            if down.is_set():
                raise StoreUnavailableError("connection refused")
            return await changes_since(revision)

        monkeypatch.setattr(store, "changes_since", failing)
        me = a._connected().fleet.identity.id
        with caplog.at_level(logging.INFO, logger="quart_waffle"):
            down.set()
            revision = await b.update({"MAX_ITEMS": 31})
            await fleet_of(
                b,
                5,
                lambda fleet: any(
                    view.record.id == me and view.record.last_error is not None
                    for view in fleet.workers
                ),
            )
            await heartbeats(b, me, 3)
            assert a.revision < revision
            down.clear()
            await until(lambda: a.revision == revision, 10, "no catch-up after the outage")
            await until(lambda: a.health().last_error is None, 5, "no recovery")
    error = "catch-up failed: StoreUnavailableError: connection refused"
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if "file sync" in r.getMessage()]
    assert logged == [
        (logging.WARNING, f"file sync failed, retrying: {error}"),
        (logging.WARNING, "file sync recovered"),
    ]


async def forge(waffle: QuartWaffle, worker_id: str, text: str, heartbeat: float) -> None:
    """Store ``text`` as worker ``worker_id``'s presence record, as a
    misbehaving (or hostile) writer could: a Redis hash field, a file, a row."""
    backend: Any = waffle._connected().fleet.backend
    if hasattr(backend, "engine"):
        from quart_waffle.store import presence_table

        async with backend.engine.begin() as connection:
            values = {"id": worker_id, "heartbeat": heartbeat, "record": text}
            await connection.execute(presence_table.insert().values(**values))
    elif hasattr(backend, "folder"):
        forged = Path(backend.folder, f"{os.urandom(6).hex()}.json")
        await asyncio.to_thread(forged.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(forged.write_text, text)
    else:
        await backend._client.hset(backend.key, worker_id, text)


async def test_forged_records_hide_no_worker(options: dict[str, Any]) -> None:
    """A pid or revision of 1e400 (int(inf)) or past 64 bits is skipped and
    counted; a revision above the store's head moves no real worker behind
    (the forger is lagging); a heartbeat far in the future is flagged as clock
    skew and still goes once it stops changing."""
    from quart_waffle.fleet.presence import undecodable_records

    waffle = worker(options, heartbeat_interval=0.1)
    async with serving(waffle):
        await waffle.update({"MAX_ITEMS": 3})
        member = waffle._connected().fleet
        mine = member.record().as_dict()
        now = time.time()

        def text(worker_id: str, **fields: Any) -> str:
            return json.dumps({**mine, "id": worker_id, "heartbeat": now, **fields})

        skipped = undecodable_records()
        await forge(
            waffle,
            "f/1/inf-pid",
            text("f/1/inf-pid").replace(f'"pid": {mine["pid"]}', '"pid": 1e400'),
            now,
        )
        await forge(waffle, "f/2/inf-rev", text("f/2/inf-rev", revision=1e400), now)
        await forge(waffle, "f/3/huge-rev", text("f/3/huge-rev", revision=10**30), now)
        await forge(waffle, "f/4/above", text("f/4/above", revision=10**12, pid=4), now)
        await forge(waffle, "f/5/ahead", text("f/5/ahead", heartbeat=now + 3600, pid=5), now + 3600)
        fleet = await waffle.fleet()
        assert undecodable_records() >= skipped + 3
        assert fleet.head == waffle.revision
        views = {view.record.id: view for view in fleet.workers}
        assert set(views) == {mine["id"], "f/4/above", "f/5/ahead"}
        assert views[mine["id"]].state == "ok"
        assert views[mine["id"]].behind == 0
        assert views["f/4/above"].state == "lagging"
        assert "above the head" in views["f/4/above"].reasons[0]
        assert views["f/5/ahead"].state == "lagging"
        assert "clock skew" in views["f/5/ahead"].reasons[0]
        bounds = member.bounds
        assert bounds.gone_after < 2.5
        # the reader ages the future heartbeat by its own clock: it goes
        await fleet_of(
            waffle,
            10,
            lambda fleet: (
                {view.record.id: view.state for view in fleet.workers}.get("f/5/ahead") == "gone"
            ),
        )
        ack = await waffle.acknowledged(waffle.revision, within=2)
        assert ack.complete, ack.text


async def test_no_credentials_in_presence(sqlite_url: str, tmp_path: Path) -> None:
    """A channel whose URL holds a password, and which fails: the record
    says the channel is down and why, never the password."""
    waffle = worker(
        {"database_url": sqlite_url},
        watchtype="redis",
        redis_url="redis://:hunter2-secret@127.0.0.1:1/0",
        redis_channel=f"waffle-test-{os.urandom(6).hex()}",
        heartbeat_interval=0.2,
        check_interval=0.5,
    )
    # presence on that Redis is unreachable too: read the record the worker would write
    async with serving(waffle):
        member = waffle._connected().fleet
        await until(lambda: member.record().last_error is not None, 5, "the error recorded")
        record = member.record()
        assert not record.connected
        assert "hunter2" not in json.dumps(record.as_dict())
        assert "hunter2" not in json.dumps(member.identity.__dict__)


async def test_bad_wait_refused_before_storing(waffle: QuartWaffle) -> None:
    revision = waffle.revision
    for wait in (-1, float("nan"), float("inf"), 10**9):
        with pytest.raises(InvalidValueError) as error:
            await waffle.update({"MAX_ITEMS": 7}, wait=wait)
        assert "wait" in error.value.errors
    assert waffle.revision == revision
    assert await waffle.update({"MAX_ITEMS": 8}, wait=False) == revision + 1


async def test_acknowledged_refuses_a_wait_that_is_no_duration(waffle: QuartWaffle) -> None:
    for within in (float("nan"), float("inf"), -1.0, 10**9):
        with pytest.raises(InvalidValueError) as error:
            await asyncio.wait_for(waffle.acknowledged(waffle.revision + 1, within=within), 5)
        assert "within" in error.value.errors
    with pytest.raises(InvalidValueError):
        await asyncio.wait_for(waffle.acknowledged(1, since=float("nan")), 5)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--revision", "5", "--within", "nan"],
        ["--max-lag", "nan"],
        ["--max-lag", "NaN"],
        ["--within", "inf", "--revision", "5"],
    ],
)
def test_status_refuses_seconds_that_are_not_finite(arguments: list[str]) -> None:
    """One line and exit 1, before the app is even loaded (``nan`` passes
    click's FloatRange: ``--within nan`` waited forever, ``--max-lag nan``
    passed every worker)."""
    from click.testing import CliRunner

    from quart_waffle.cli import waffle_cli

    result = CliRunner().invoke(waffle_cli, ["status", *arguments], obj=None)
    assert result.exit_code == 1, result.output
    assert "is not a number of seconds" in result.output or "not in the range" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


async def test_api_fleet_and_waiting_write(client: Client) -> None:
    response = await client.get("/waffle/api/fleet")
    assert response.status_code == 401
    response = await client.get("/waffle/api/fleet", headers=AUTH)
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"generated_at", "head", "bounds", "counts", "workers"}
    assert body["counts"]["workers"] == 1

    response = await client.patch(
        "/waffle/api/settings?wait=true&timeout=5", json={"values": {"MAX_ITEMS": 9}}, headers=AUTH
    )
    assert response.status_code == 200
    body = await response.get_json()
    ack = body["acknowledgement"]
    assert ack["complete"] is True
    assert (ack["applied"], ack["expected"], ack["revision"]) == (1, 1, body["revision"])
    assert ack["text"].startswith("applied by 1 of 1 worker in ")

    response = await client.delete("/waffle/api/settings/MAX_ITEMS?wait=1", headers=AUTH)
    assert (await response.get_json())["acknowledgement"]["complete"] is True
    response = await client.put("/waffle/api/settings/MAX_ITEMS", json={"value": 11}, headers=AUTH)
    assert "acknowledgement" not in await response.get_json()

    for query, field in (
        ("wait=maybe", "wait"),
        ("wait=true&timeout=-1", "timeout"),
        ("wait=true&timeout=nan", "timeout"),
        ("wait=true&timeout=61", "timeout"),
    ):
        response = await client.patch(
            f"/waffle/api/settings?{query}", json={"values": {"MAX_ITEMS": 12}}, headers=AUTH
        )
        assert response.status_code == 422, query
        assert field in (await response.get_json())["error"]["fields"], query
    response = await client.get("/waffle/api/settings/MAX_ITEMS", headers=AUTH)
    assert (await response.get_json())["setting"]["value"] == 11


async def test_openapi_documents_fleet_and_wait(client: Client) -> None:
    document = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
    assert "get" in document["paths"]["/waffle/api/fleet"]
    names = {p["name"] for p in document["paths"]["/waffle/api/settings"]["patch"]["parameters"]}
    assert {"wait", "timeout"} <= names


def test_behind_a_change_no_worker_applied() -> None:
    """Behind the head is measured from the head's commit when no worker
    serves it yet (a change every worker missed), and from the first worker
    that served it otherwise."""
    now = time.time()
    bounds = bounds_for(heartbeat=1.0, check_interval=5.0)  # behind_after 6 s

    def record(pid: int, revision: int, applied_at: float) -> PresenceRecord:
        return PresenceRecord(
            f"h/{pid}/x",
            "h",
            pid,
            now - 100,
            "",
            "store",
            revision,
            applied_at,
            "redis",
            True,
            now,
            None,
            now,
            1.0,
        )

    missed = judge([record(1, 4, now - 90), record(2, 4, now - 90)], bounds, now, 5, now - 30)
    assert [view.state for view in missed.workers] == ["lagging", "lagging"]
    assert missed.workers[0].behind == pytest.approx(30, abs=0.1)
    fresh = judge([record(1, 4, now - 90)], bounds, now, 5, now - 2)
    assert [view.state for view in fresh.workers] == ["ok"]
    served = judge([record(1, 4, now - 90), record(2, 5, now - 10)], bounds, now, 5)
    assert [view.state for view in served.workers] == ["lagging", "ok"]


async def test_page_fleet_needs_a_login(client: Client) -> None:
    """The page's fleet data (host names, pids, versions) is for a logged-in
    page only; a bearer token reads /api/fleet instead."""
    response = await client.get("/waffle/fleet")
    assert response.status_code in (401, 403)
    body = await response.get_data(as_text=True)
    assert str(os.getpid()) not in body
    assert '"workers"' not in body
