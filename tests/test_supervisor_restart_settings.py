"""Restart-required settings: a change to a setting declared ``restart=True`` makes each
worker that applies it ask its supervisor for a rolling reload, and the supervisor makes one
reload of them; outside the supervisor the admin says the change awaits a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from harness.deployment import Deployment
from harness.http import http_request
from harness.load import LoadReport, run_load
from quart_waffle import QuartWaffle, Setting
from quart_waffle.supervisor.pool import Pool
from tests.helpers import ADMIN_TOKEN
from tests.supervisor_apps.harness import ServerProcess, whoami
from tests.test_admin_page import logged_in
from tests.test_supervisor_pool import FakeSpawner, _until, maintained

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SETTINGS: list[Setting[Any]] = [Setting("POOL_SIZE", 5, restart=True), Setting("GREETING", "hello")]
ASKED = r"Worker \d+ asks for a restart \(POOL_SIZE changed at revision 1\)"


def generations(spawner: FakeSpawner) -> set[int]:
    return {worker.generation for worker in spawner.workers}


def ask(spawner: FakeSpawner, pool: Pool, generation: int) -> None:
    for pid in pool.serving:
        if (worker := spawner.by_pid(pid)).generation == generation:
            worker.restarts.put_nowait("POOL_SIZE changed at revision 1")


def ask_one(spawner: FakeSpawner, pid: int) -> None:
    spawner.by_pid(pid).restarts.put_nowait("POOL_SIZE changed at revision 1")


@pytest.mark.timeout(10)
async def test_every_worker_asking_makes_one_reload() -> None:
    spawner = FakeSpawner(startup=0.05)
    async with maintained(spawner, [], workers=4) as pool:
        first = list(pool.serving)
        ask_one(spawner, first[0])
        # the others apply the change later, while the reload it asked for runs
        await _until(lambda: 1 in generations(spawner))
        for pid in first[1:]:
            ask_one(spawner, pid)
        await _until(lambda: not set(first) & set(pool.serving) and len(pool.serving) == 4)
        await asyncio.sleep(0.3)  # room for a second reload, which must not come
        assert generations(spawner) == {0, 1}
        assert pool.generation == 1


@pytest.mark.timeout(10)
async def test_old_workers_asking_during_a_reload_are_merged_new_ones_are_not() -> None:
    spawner = FakeSpawner(startup=0.05)
    async with maintained(spawner, [], workers=3) as pool:
        reloaded = pool.request_reload()
        await _until(lambda: any(spawner.by_pid(p).generation == 1 for p in pool.serving))
        assert not reloaded.done()
        # a worker the reload under way replaces: merged into it; one that reload started
        # but that applied the change after its start: it needs a reload of its own
        ask(spawner, pool, 0)
        ask(spawner, pool, 1)
        await reloaded
        await _until(lambda: {spawner.by_pid(p).generation for p in pool.serving} == {2})
        await asyncio.sleep(0.3)
        assert generations(spawner) == {0, 1, 2}


@pytest.mark.timeout(10)
async def test_asking_while_a_reload_waits_to_start_shares_it() -> None:
    spawner = FakeSpawner()
    async with maintained(spawner, [], workers=2) as pool:
        first = pool.request_reload()
        second = pool.request_reload()  # waits for the first: both share the next reload
        ask(spawner, pool, 0)
        await asyncio.gather(first, second)
        await asyncio.sleep(0.2)
        assert max(generations(spawner)) <= 2


@pytest.fixture(name="app")
async def _app(sqlite_url: str) -> AsyncIterator[Quart]:
    app = Quart(__name__)
    app.secret_key = "test-secret-key"
    QuartWaffle(app, settings=SETTINGS, database_url=sqlite_url, admin_token=ADMIN_TOKEN)
    async with app.test_app():
        yield app


async def settings_api(app: Quart) -> dict[str, dict[str, object]]:
    response = await app.test_client().get("/waffle/api/settings", headers=AUTH)
    assert response.status_code == 200
    return {item["key"]: item for item in (await response.get_json())["settings"]}


async def test_outside_the_supervisor_the_admin_says_a_restart_is_needed(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    waffle: QuartWaffle = app.extensions["waffle"]
    items = await settings_api(app)
    assert items["POOL_SIZE"]["restart"] is True
    assert items["GREETING"]["restart"] is False
    assert not any(item["restart_pending"] for item in items.values())

    with caplog.at_level(logging.WARNING, "quart_waffle"):
        await waffle.update({"POOL_SIZE": 9, "GREETING": "hi"})
    items = await settings_api(app)
    assert items["POOL_SIZE"]["restart_pending"] is True
    assert items["GREETING"]["restart_pending"] is False
    assert waffle.pending_restart == ["POOL_SIZE"]
    assert not waffle.restart_requested
    assert "POOL_SIZE changed at revision 1: takes effect after a restart" in caplog.text

    client = app.test_client()
    await logged_in(client)
    text = await (await client.get("/waffle/")).get_data(as_text=True)
    assert 'id="restart-POOL_SIZE">takes effect after a restart' in text
    assert "restart-GREETING" not in text

    await waffle.update({"POOL_SIZE": 5})  # back to the value this process started with
    assert waffle.pending_restart == []
    assert (await settings_api(app))["POOL_SIZE"]["restart_pending"] is False
    text = await (await client.get("/waffle/")).get_data(as_text=True)
    assert 'id="restart-POOL_SIZE">read at start-up' in text


async def test_any_write_of_a_secret_awaits_a_restart(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Were a write of a secret's start-up value not to await a restart, the answer to a
    writer who may not read the secret would tell whether a guess was right."""
    app = Quart(__name__)
    secret = Setting("DB_PASSWORD", "s3cret-at-start", secret=True, restart=True)
    waffle = QuartWaffle(app, settings=[secret], database_url=sqlite_url, admin_token=ADMIN_TOKEN)
    client = app.test_client()
    async with app.test_app():
        for guess in ("s3cret-at-start", "wrong-guess", "s3cret-at-start"):
            with caplog.at_level(logging.WARNING, "quart_waffle"):
                response = await client.put(
                    "/waffle/api/settings/DB_PASSWORD", json={"value": guess}, headers=AUTH
                )
            assert response.status_code == 200, await response.get_json()
            assert (await response.get_json())["setting"]["restart_pending"] is True, guess
            assert waffle.pending_restart == ["DB_PASSWORD"]
            revision = waffle.revision
            assert f"DB_PASSWORD changed at revision {revision}: takes effect after" in caplog.text
            caplog.clear()
        assert waffle.get("DB_PASSWORD") == "s3cret-at-start"


async def test_a_value_loaded_at_start_up_needs_no_restart(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = QuartWaffle(Quart(__name__), settings=SETTINGS, database_url=sqlite_url)
    async with writer.connected():
        await writer.update({"POOL_SIZE": 7})
    # a process that only looks like a worker (the variable inherited) asks nobody
    monkeypatch.setenv("QUART_WAFFLE_GENERATION", "3")
    app = Quart(__name__)
    waffle = QuartWaffle(app, settings=SETTINGS, database_url=sqlite_url)
    async with app.test_app():
        assert waffle.get("POOL_SIZE") == 7
        assert waffle.pending_restart == []
        await waffle.update({"POOL_SIZE": 8})
        assert waffle.pending_restart == ["POOL_SIZE"]
        assert not waffle.restart_requested


APP_SOURCE = """
import os

from quart import Quart

from quart_waffle import QuartWaffle, Setting

app = Quart(__name__)
waffle = QuartWaffle(
    app, settings=[Setting("POOL_SIZE", 5, restart=True), Setting("GREETING", "hello")]
)
POOL_SIZE_AT_START = []


@app.before_serving
async def read_pool_size():
    POOL_SIZE_AT_START.append(waffle.get("POOL_SIZE"))


@app.get("/whoami")
async def whoami():
    return {"pid": os.getpid(), "pool": POOL_SIZE_AT_START[0], "greeting": waffle.get("GREETING")}
"""


@pytest.mark.timeout(120)
async def test_a_restart_setting_change_rolls_the_workers_once_with_no_failure(
    tmp_path: Path,
) -> None:
    (tmp_path / "restart_app.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
    }
    server = ServerProcess(
        tmp_path, "restart_app:app", ["-w", "2", "--keep-alive-timeout", "1"], env, cwd=tmp_path
    )
    stop = asyncio.Event()
    load: asyncio.Task[LoadReport] | None = None
    try:
        first = server.started_pids()
        assert len(first) == 2
        load = asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=4, keep_alive=True, stop=stop)
        )
        await asyncio.sleep(0.5)
        app = Quart(__name__)
        app.config["WAFFLE_INSTANCE_PATH"] = str(tmp_path)
        waffle = QuartWaffle(
            app,
            settings=SETTINGS,
            database_url=env["WAFFLE_DATABASE_URL"],
            watchtype="file",
            watcher_file=env["WAFFLE_WATCHER_FILE"],
        )
        async with waffle.connected():
            assert await waffle.update({"POOL_SIZE": 9}) == 1

        await asyncio.to_thread(server.wait_for_log, r"reload 1 done", 90)
        await asyncio.sleep(2)  # room for a second reload, which must not come
        stop.set()
        report = await load

        log = server.log()
        assert report.failures == [], report.failures[:3]
        assert len(re.findall(ASKED, log)) == 2, log  # each worker asked ...
        assert len(re.findall(rf"{ASKED}: rolling reload", log)) == 1  # ... one reload
        assert "reload 2" not in log
        answers = [await whoami(server.port) for _ in range(8)]
        assert {answer["pool"] for answer in answers} == {9}
        assert not {int(str(answer["pid"])) for answer in answers} & first
    finally:
        stop.set()
        if load is not None:
            await asyncio.gather(load, return_exceptions=True)
        server.close()


@pytest.mark.timeout(90)
async def test_under_plain_hypercorn_the_admin_api_says_a_restart_is_needed(
    tmp_path: Path,
) -> None:
    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
        "WAFFLE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    app = "tests.supervisor_apps.restart_app:app"
    async with Deployment(env, tmp_path / "hypercorn.log", workers=2, app=app) as deployment:
        pids = await deployment.worker_pids()
        writer = QuartWaffle(
            Quart(__name__),
            settings=SETTINGS,
            database_url=env["WAFFLE_DATABASE_URL"],
            watchtype="file",
            watcher_file=env["WAFFLE_WATCHER_FILE"],
        )
        async with writer.connected():
            await writer.update({"POOL_SIZE": 9})
        # every worker applied it, nothing restarted: each still runs its start-up value
        answers = await deployment.until_all_serve(
            lambda answer: answer["pending_restart"] == ["POOL_SIZE"], pids
        )
        assert {answer["pool"] for answer in answers.values()} == {5}
        status, body = await http_request(
            deployment.port, "GET", "/waffle/api/settings/POOL_SIZE", headers=AUTH
        )
        assert status == 200, body
        setting = json.loads(body)["setting"]
        assert setting["restart"] is True
        assert setting["restart_pending"] is True
        assert setting["value"] == 9
        assert await deployment.worker_pids() == pids
