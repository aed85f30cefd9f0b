"""The fleet of real ``hypercorn -w 2`` deployments: two hosts (distinct host
ids) sharing PostgreSQL and Redis. The fleet view lists every worker with the
revision it serves; a write with ``wait`` reports all of them; a paused worker
(SIGSTOP) is flagged lagging and named by a write's wait that times out;
``quart waffle status`` exits 3 while a worker lags, 0 once it caught up.
The file channel and a killed worker: tests/test_fleet_file.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from harness import REDIS_URL, ROOT, Deployment, http_request
from tests.conftest import require

TOKEN = "fleet-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEARTBEAT = 1.5
"""Seconds between heartbeats: lagging after 4 s, gone after 16 s (the commands
run while a worker is paused need seconds to start on a loaded machine)."""
Fleet = dict[str, Any]


def host_env(
    watchtype: str, database_url: str, tmp_path: Path, host: str, **extra: str
) -> dict[str, str]:
    return {
        "WAFFLE_WATCHTYPE": watchtype,
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_INSTANCE_PATH": str(tmp_path / host / "instance"),
        "WAFFLE_WATCHER_FILE": str(tmp_path / host / "run" / "waffle.revision"),
        "WAFFLE_ADMIN_TOKEN": TOKEN,
        "WAFFLE_SYNC_KEY": "fleet-test-sync-key",
        "WAFFLE_HOST_ID": host,
        "WAFFLE_VERSION": f"v-{host}",
        "WAFFLE_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "WAFFLE_CHECK_INTERVAL": "2",
        **extra,
    }


@contextlib.asynccontextmanager
async def hosts(*envs: dict[str, str], log_dir: Path) -> AsyncIterator[list[Deployment]]:
    deployments = [
        Deployment(
            env, log_dir / f"{env['WAFFLE_HOST_ID']}.log", workers=2, app="tests.sync_app:app"
        )
        for env in envs
    ]
    started: list[Deployment] = []
    try:
        for deployment in deployments:
            await deployment.start()
            started.append(deployment)
        yield deployments
    finally:
        for deployment in started:
            await deployment.stop()


async def fleet(port: int) -> Fleet:
    status, body = await http_request(port, "GET", "/waffle/api/fleet", headers=AUTH)
    assert status == 200, body
    answer: Fleet = json.loads(body)
    return answer


async def fleet_until(port: int, check: Callable[[Fleet], bool], within: float, what: str) -> Fleet:
    deadline = time.monotonic() + within
    while True:
        answer = await fleet(port)
        if check(answer):
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}: {json.dumps(answer, indent=1)}")
        await asyncio.sleep(0.1)


def states(answer: Fleet) -> dict[tuple[str, int], str]:
    return {(worker["host"], worker["pid"]): worker["state"] for worker in answer["workers"]}


async def write(port: int, values: dict[str, Any], wait: float) -> dict[str, Any]:
    status, body = await http_request(
        port,
        "PATCH",
        f"/waffle/api/settings?wait=true&timeout={wait}",
        {"values": values},
        headers=AUTH,
        within=wait + 10,
    )
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


async def status_command(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``quart waffle status`` in its own process: (exit status, output)."""
    environment = {key: value for key, value in os.environ.items() if key[:7] != "WAFFLE_"}
    environment.update(env, PYTHONPATH=str(ROOT), QUART_APP="examples.app:app")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "quart", "waffle", "status", *args),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_two_hosts_on_postgres_and_redis(postgres_url: str, tmp_path: Path) -> None:
    require("Redis")
    channel = f"waffle-test-{os.urandom(6).hex()}"
    common = {"WAFFLE_REDIS_URL": REDIS_URL, "WAFFLE_REDIS_CHANNEL": channel}
    env_a = host_env("redis", postgres_url, tmp_path, "host-a", **common)
    env_b = host_env("redis", postgres_url, tmp_path, "host-b", **common)
    async with hosts(env_a, env_b, log_dir=tmp_path) as (a, b):
        pids_a, pids_b = await a.worker_pids(), await b.worker_pids()
        expected = {("host-a", pid) for pid in pids_a} | {("host-b", pid) for pid in pids_b}
        answer = await fleet_until(
            a.port,
            lambda f: set(states(f)) == expected and set(states(f).values()) == {"ok"},
            15,
            "every worker of both hosts, ok",
        )
        assert answer["counts"] == {"workers": 4, "hosts": 2, "ok": 4, "lagging": 0, "gone": 0}
        assert {w["version"] for w in answer["workers"]} == {"v-host-a", "v-host-b"}
        assert all(w["channel"] == "redis" and w["connected"] for w in answer["workers"])
        assert not any("redis://" in json.dumps(w) for w in answer["workers"])

        # a write that waits: every worker of both hosts, counted and named
        written = await write(b.port, {"GREETING": "hello fleet"}, wait=10)
        ack = written["acknowledgement"]
        assert ack["complete"], ack
        assert ack["applied"] == ack["expected"] == 4, ack
        assert ack["text"].startswith("applied by 4 of 4 workers in "), ack
        answer = await fleet(a.port)
        assert {w["revision"] for w in answer["workers"]} == {written["revision"]}
        assert answer["head"] == written["revision"]

        # a paused worker: lagging in the view, named by a wait that times out
        paused = min(pids_b)
        os.kill(paused, signal.SIGSTOP)
        try:
            # started now, it reads the fleet within seconds: the paused worker is live
            waiting = asyncio.create_task(
                status_command(env_a, "--revision", str(written["revision"] + 1), "--within", "8")
            )
            await fleet_until(
                a.port,
                lambda f: states(f).get(("host-b", paused)) == "lagging",
                15,
                "the paused worker flagged lagging",
            )
            # runs while the write waits: both before the worker counts as gone
            status = asyncio.create_task(status_command(env_a, "--max-lag", "2.5"))
            written = await write(a.port, {"MAX_ITEMS": 33}, wait=1.0)
            code, output = await waiting
            assert code == 3, output
            assert f"not yet: host-b pid {paused} serves revision" in output, output
            code, output = await status
            assert code == 3, output
            assert f"host-b\tpid {paused}\trevision 1\tLAGGING" in output, output
            ack = written["acknowledgement"]
            assert not ack["complete"], ack
            assert (ack["applied"], ack["expected"]) == (3, 4), ack
            assert [(w["host"], w["pid"]) for w in ack["pending"]] == [("host-b", paused)]
            assert ack["pending"][0]["revision"] < written["revision"]
            assert f"host-b pid {paused} serves revision" in ack["text"], ack
        finally:
            os.kill(paused, signal.SIGCONT)
        await fleet_until(
            a.port,
            lambda f: (
                set(states(f).values()) == {"ok"}
                and {w["revision"] for w in f["workers"]} == {f["head"]}
            ),
            15,
            "the resumed worker caught up",
        )
        code, output = await status_command(env_b)
        assert code == 0, output
        assert "4 keeping up, 0 lagging, 0 gone" in output, output
        head = (await fleet(a.port))["head"]
        code, output = await status_command(env_b, "--revision", str(head), "--within", "5")
        assert code == 0, output
        assert output.startswith("applied by 4 of 4 workers in "), output
