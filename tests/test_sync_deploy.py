"""Every worker of real ``hypercorn -w 4`` deployments converges: by message
within milliseconds (with the periodic check a minute away, so that only a
message can meet the bound), and by the periodic check after a lost publish, a
paused worker, a deleted watcher file or a Redis restart. Reads never fail
meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from examples.app import app as demo_app
from harness import REDIS_URL, ROOT, Deployment, RedisServer, WhoAmI, http_get, http_request
from quart_waffle import QuartWaffle
from quart_waffle.sync.runner import STORE_CHECK_EVERY
from tests.conftest import require

CHECK_INTERVAL = 0.5
BOUND = CHECK_INTERVAL + 2.0
"""The documented bound (check_interval + a query) plus slack for a loaded 2-core machine."""
UNANNOUNCED_BOUND = STORE_CHECK_EVERY * CHECK_INTERVAL + 2.0
"""The bound for a change never announced (the channel's witness never saw it)."""
BY_MESSAGE = 1.5
"""Seconds within which every worker applies a change when the periodic check
is a minute away: only a message can meet it."""
SILENT_CHECK_INTERVAL = "60"
SHUTDOWN_NOISE = ("Traceback", "Task was destroyed", "never awaited", "Unclosed", "ResourceWarning")


def updater(env: dict[str, str]) -> QuartWaffle:
    """The demo's declarations on the deployment's store and channel, in this
    process: its updates commit and notify exactly as a worker's do."""
    app = Quart(__name__, instance_path=env["WAFFLE_INSTANCE_PATH"])
    app.config["WAFFLE_CONFS"] = demo_app.config["WAFFLE_CONFS"]
    options: dict[str, Any] = {
        key.removeprefix("WAFFLE_").lower(): value for key, value in env.items()
    }
    options.pop("instance_path")
    return QuartWaffle(app, **options)


def deployment_env(
    watchtype: str, database_url: str, tmp_path: Path, **extra: str
) -> dict[str, str]:
    return {
        "WAFFLE_WATCHTYPE": watchtype,
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_INSTANCE_PATH": str(tmp_path / "instance"),
        "WAFFLE_WATCHER_FILE": str(tmp_path / "run" / "waffle.revision"),
        "WAFFLE_CHECK_INTERVAL": str(CHECK_INTERVAL),
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": f"waffle-test-{os.urandom(6).hex()}",
        **extra,
    }


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], log: Path, workers: int = 4) -> AsyncIterator[Deployment]:
    """A deployment that must shut down cleanly: status 0, nothing left in its log."""
    deployment = Deployment(
        {**env, "PYTHONWARNINGS": "default", "WAFFLE_TEST_OUTLIVE_TERMINATE": "1"},
        log,
        workers=workers,
        app="tests.sync_app:app",
    )
    await deployment.start()
    try:
        yield deployment
    finally:
        status = await deployment.stop()
    assert status == 0, deployment.log_tail()
    noise = [
        line
        for line in deployment.log_tail(400).splitlines()
        if any(n in line for n in SHUTDOWN_NOISE)
    ]
    assert noise == [], deployment.log_tail()
    reports = [line for line in deployment.log_tail(400).splitlines() if "shutdown pid=" in line]
    assert len(reports) == workers, deployment.log_tail()
    assert all("waffle_tasks=[] connected=False" in line for line in reports), reports


def serves(revision: int, **settings: Any) -> Any:
    def check(answer: WhoAmI) -> bool:
        return answer["revision"] >= revision and all(
            answer["settings"][key] == value for key, value in settings.items()
        )

    return check


async def converge(
    deployment: Deployment, pids: set[int], revision: int, within: float, **settings: Any
) -> None:
    """Wait until every worker serves ``revision``; fail beyond ``within`` seconds."""
    await deployment.until_all_serve(serves(revision, **settings), pids, within=within)


@pytest.fixture(name="case", params=["file", "redis", "postgres"])
def _case(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(watchtype, database URL): the file channel on SQLite, as the demo embeds it."""
    watchtype: str = request.param
    if watchtype == "redis":
        require("Redis")
    fixture = "sqlite_url" if watchtype == "file" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return watchtype, url


async def test_every_worker_converges(case: tuple[str, str], tmp_path: Path) -> None:
    watchtype, database_url = case
    env = deployment_env(watchtype, database_url, tmp_path)
    waffle = updater(env)
    async with waffle.connected(), serving(env, tmp_path / "hypercorn.log") as deployment:
        pids = await deployment.worker_pids()
        assert len(pids) == 4

        # through one worker; that messages alone carry it is proven below, by
        # test_every_other_worker_applies_a_change_by_message (check interval 60 s)
        greeting = f"Hello from {watchtype}"
        status, body = await http_request(
            deployment.port, "POST", "/test/update", {"GREETING": greeting}
        )
        assert status == 200, body
        revision = json.loads(body)["revision"]
        await converge(deployment, pids, revision, BOUND, GREETING=greeting)
        # from another process, as the CLI does
        revision = await waffle.update({"GREETING": f"{greeting}!"})
        await converge(deployment, pids, revision, BOUND, GREETING=f"{greeting}!")

        # a publish lost on purpose: the periodic check that reads the store carries it
        store = waffle._connected().store
        lost = (await store.write({"MAX_ITEMS": "123"})).revision
        assert lost is not None
        await converge(deployment, pids, lost, UNANNOUNCED_BOUND, MAX_ITEMS=123)

        # a worker paused while updates happen, then resumed
        paused = min(pids)
        os.kill(paused, signal.SIGSTOP)
        try:
            for number in range(5):
                revision = await waffle.update({"MAX_ITEMS": 200 + number})
            others = pids - {paused}
            await converge(deployment, others, revision, BOUND, MAX_ITEMS=204)
        finally:
            os.kill(paused, signal.SIGCONT)
        await converge(deployment, pids, revision, BOUND, MAX_ITEMS=204)

        if watchtype == "file":
            # the watcher file deleted, with an unannounced change; then replaced
            watcher = env["WAFFLE_WATCHER_FILE"]
            revision = (await store.write({"THEME": '"dark"'})).revision or 0
            os.unlink(watcher)
            await converge(deployment, pids, revision, BOUND, THEME="dark")
            revision = (await store.write({"THEME": '"light"'})).revision or 0
            replacement = tmp_path / "replacement"
            replacement.write_text("replaced by hand\n")
            os.replace(replacement, watcher)
            await converge(deployment, pids, revision, BOUND, THEME="light")
            revision = await waffle.update({"THEME": "dark"})
            await converge(deployment, pids, revision, 1.0, THEME="dark")


async def applied_at(
    deployment: Deployment, pids: set[int], revision: int, within: float = 10.0
) -> dict[int, float]:
    """When, by its own wall clock, each worker in ``pids`` applied ``revision``
    (or a later one); fail naming the workers that had not after ``within`` s."""
    deadline = time.monotonic() + within
    seen: dict[int, float] = {}
    while not pids <= seen.keys():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"workers {sorted(pids - seen.keys())} did not apply revision {revision}"
                f" within {within} s\n{deployment.log_tail()}"
            )
        for status, body in await asyncio.gather(
            *(http_get(deployment.port, "/test/applied") for _ in range(12))
        ):
            assert status == 200, body
            answer = json.loads(body)
            times = [when for rev, when in answer["applied"].items() if int(rev) >= revision]
            if times:
                seen[answer["pid"]] = min(times)
        await asyncio.sleep(0.02)
    return {pid: seen[pid] for pid in pids}


async def cli(env: dict[str, str], *args: str) -> str:
    """``quart --app tests.sync_app:app waffle ARGS`` in its own process; its output."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WAFFLE_")}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("quart")),
        "--app",
        "tests.sync_app:app",
        "waffle",
        *args,
        cwd=ROOT,
        env={**environment, **env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_every_other_worker_applies_a_change_by_message(
    case: tuple[str, str], tmp_path: Path
) -> None:
    """With the periodic check a minute away, a change made through one worker,
    or by the CLI in another process, is applied by every worker (each pid
    answering for itself) within BY_MESSAGE seconds of its commit."""
    watchtype, database_url = case
    env = deployment_env(
        watchtype, database_url, tmp_path, WAFFLE_CHECK_INTERVAL=SILENT_CHECK_INTERVAL
    )
    waffle = updater(env)
    async with waffle.connected(), serving(env, tmp_path / "hypercorn.log") as deployment:
        pids = await deployment.worker_pids()
        assert len(pids) == 4

        # the control: a change nobody announces is not applied, the check is that far away
        store = waffle._connected().store
        unannounced = (await store.write({"MAX_ITEMS": "321"})).revision
        assert unannounced is not None
        await asyncio.sleep(BY_MESSAGE)
        latest = await deployment.until_all_serve(lambda _answer: True, pids)
        assert all(answer["revision"] < unannounced for answer in latest.values()), latest

        # through one worker: the three others hear of it by message alone
        started = time.time()
        status, body = await http_request(
            deployment.port, "POST", "/test/update", {"GREETING": f"by {watchtype}"}
        )
        assert status == 200, body
        writer, revision = json.loads(body)["pid"], json.loads(body)["revision"]
        delays = {
            pid: when - started
            for pid, when in (await applied_at(deployment, pids - {writer}, revision)).items()
        }
        assert len(delays) == 3
        assert max(delays.values()) < BY_MESSAGE, delays
        # what each serves: the time was measured above, here polling must reach every pid
        await converge(deployment, pids, revision, 10.0, GREETING=f"by {watchtype}", MAX_ITEMS=321)

        # by the CLI, another process: every worker hears of it by message alone
        output = await cli(env, "set", "GREETING=from the CLI", "--actor", "proof")
        revision = int(output.split()[-1])
        [entry] = await waffle.history(limit=1)
        assert entry.revision == revision
        assert entry.changed_at is not None
        committed = entry.changed_at.timestamp()
        delays = {
            pid: when - committed
            for pid, when in (await applied_at(deployment, pids, revision)).items()
        }
        assert len(delays) == 4
        assert max(delays.values()) < BY_MESSAGE, delays
        await converge(deployment, pids, revision, 10.0, GREETING="from the CLI")


@pytest.mark.parametrize("watchtype", ["redis", "postgres"])
async def test_two_hosts_share_one_database(
    watchtype: str, tmp_path: Path, postgres_url: str
) -> None:
    """Two deployments (separate instance paths and ports) on one PostgreSQL
    and one Redis: an update through either reaches every worker of both."""
    require("Redis")
    channel = f"waffle-test-{os.urandom(6).hex()}"
    envs = [
        deployment_env(watchtype, postgres_url, tmp_path / host, WAFFLE_REDIS_CHANNEL=channel)
        for host in ("a", "b")
    ]
    waffles = [updater(env) for env in envs]
    async with (
        waffles[0].connected(),
        waffles[1].connected(),
        serving(envs[0], tmp_path / "a.log", workers=2) as host_a,
        serving(envs[1], tmp_path / "b.log", workers=2) as host_b,
    ):
        pids_a, pids_b = await asyncio.gather(host_a.worker_pids(), host_b.worker_pids())
        for number, waffle in enumerate(waffles):
            greeting = f"from host {number}"
            revision = await waffle.update({"GREETING": greeting})
            await asyncio.gather(
                converge(host_a, pids_a, revision, BOUND, GREETING=greeting),
                converge(host_b, pids_b, revision, BOUND, GREETING=greeting),
            )


async def test_redis_restarted_during_a_stream_of_updates(
    tmp_path: Path, postgres_url: str
) -> None:
    async with RedisServer() as redis_server:
        env = deployment_env("redis", postgres_url, tmp_path, WAFFLE_REDIS_URL=redis_server.url)
        waffle = updater(env)
        async with waffle.connected(), serving(env, tmp_path / "hypercorn.log") as deployment:
            pids = await deployment.worker_pids()
            reads = 0
            revision = 0

            async def stream() -> int:
                latest = 0
                for number in range(60):
                    latest = await waffle.update({"MAX_ITEMS": 1 + number})
                    await asyncio.sleep(0.03)
                return latest

            async def outage() -> None:
                await asyncio.sleep(0.4)
                await redis_server.stop()
                await asyncio.sleep(0.5)
                await redis_server.start()

            streaming = asyncio.gather(stream(), outage())
            while not streaming.done():
                reads += len(await deployment.sample(4))  # raises if a read fails
            revision = (await streaming)[0]
            assert reads > 0
            store = waffle._connected().store
            assert await store.latest_revision() == revision
            await converge(deployment, pids, revision, BOUND, MAX_ITEMS=60)
            # and updates flow again
            revision = await waffle.update({"MAX_ITEMS": 61})
            await converge(deployment, pids, revision, BOUND, MAX_ITEMS=61)
