"""The fork server, on real processes: each generation's workers are forked by one fork server
and adopted by the supervisor; `--preload-app` imports the app once, in the fork server; a
reload under load fails no request; broken code fails the reload and the old generation keeps
serving; a killed supervisor leaves no process behind; without a fork server (the option off,
or one that cannot start) workers start from fresh interpreters."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.http import http_request
from harness.load import run_load
from quart_waffle.supervisor.config import ServeConfig
from quart_waffle.supervisor.forkserver import ForkServers
from quart_waffle.supervisor.listeners import Listeners
from tests.supervisor_apps.harness import ServerProcess, status

APP = "tests.supervisor_apps.forkapp:app"
WORKERS = 2
GONE_WITHIN = 30.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(name="broken")
def _broken(tmp_path: Path) -> Path:
    return tmp_path / "broken"


@pytest.fixture(name="servers")
def _servers() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.close()


def serve(tmp_path: Path, servers: list[ServerProcess], broken: Path, *args: str) -> ServerProcess:
    server = ServerProcess(
        tmp_path,
        APP,
        ["-w", str(WORKERS), "--keep-alive-timeout", "1", "--graceful-timeout", "5", *args],
        {"WAFFLE_TEST_BROKEN": str(broken)},
    )
    servers.append(server)
    return server


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def until(condition: Any, what: str, timeout: float = GONE_WITHIN) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.05)


async def origins(server: ServerProcess, workers: set[int]) -> dict[int, dict[str, Any]]:
    """``GET /origin`` on fresh connections until every one of `workers` has answered."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + GONE_WITHIN
    while set(seen) != workers:
        assert time.monotonic() < deadline, (seen, workers)
        code, body = await http_request(
            server.port, "GET", "/origin", headers={"Connection": "close"}, within=30
        )
        assert code == 200, body
        answer = json.loads(body)
        seen[answer["pid"]] = answer
    return seen


def pool(server: ServerProcess) -> tuple[set[int], list[int]]:
    """The workers and the fork servers the supervisor reports."""
    state = status(server)
    return {worker["pid"] for worker in state["workers"]}, state["fork_servers"]


async def test_each_generation_is_forked_by_its_own_fork_server(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken)
    supervisor = server.process.pid
    workers, [fork_server] = pool(server)
    assert len(workers) == WORKERS
    assert parent_of(fork_server) == supervisor
    for pid, answer in (await origins(server, workers)).items():
        assert parent_of(pid) == supervisor  # adopted: the supervisor waits for it
        assert answer["forked"]
        assert answer["imported_by"] == pid  # the app module is the worker's own

    reloaded = await server.reload()
    assert reloaded.returncode == 0, reloaded.output
    until(lambda: len(pool(server)[1]) == 1 and gone(fork_server), "the old fork server gone")
    new_workers, [new_fork_server] = pool(server)
    assert new_fork_server != fork_server
    assert not new_workers & workers
    for answer in (await origins(server, new_workers)).values():
        assert answer["forked"]
    assert all(gone(pid) for pid in workers)


async def test_preload_app_imports_the_app_once_in_the_fork_server(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken, "--preload-app")
    workers, [fork_server] = pool(server)
    for pid, answer in (await origins(server, workers)).items():
        assert answer["imported_by"] == fork_server != pid


@pytest.mark.timeout(180)
@pytest.mark.parametrize("options", [(), ("--preload-app",)], ids=["default", "preload-app"])
async def test_reloads_under_load_fail_no_request(
    tmp_path: Path, servers: list[ServerProcess], broken: Path, options: tuple[str, ...]
) -> None:
    server = serve(tmp_path, servers, broken, *options)
    stop = asyncio.Event()
    loads = [
        asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=3, keep_alive=keep_alive, stop=stop)
        )
        for keep_alive in (False, True)
    ]
    await asyncio.sleep(0.5)
    for _ in range(2):
        reloaded = await server.reload()
        assert reloaded.returncode == 0, reloaded.output
    stop.set()
    reports = await asyncio.gather(*loads)
    workers, _ = pool(server)
    for report in reports:
        assert report.failures == [], report.failures[:3]
        assert {sample.pid for sample in report.samples} & workers  # the last generation served


@pytest.mark.parametrize("options", [(), ("--preload-app",)], ids=["default", "preload-app"])
async def test_broken_code_fails_the_reload_and_the_old_generation_keeps_serving(
    tmp_path: Path, servers: list[ServerProcess], broken: Path, options: tuple[str, ...]
) -> None:
    server = serve(tmp_path, servers, broken, *options)
    workers, fork_servers = pool(server)
    await asyncio.to_thread(broken.touch)
    reloaded = await server.reload()
    assert reloaded.returncode != 0
    assert "this version is broken" in reloaded.output
    assert "RuntimeError" in reloaded.output
    await asyncio.to_thread(broken.unlink)
    until(lambda: pool(server) == (workers, fork_servers), "the old generation alone")
    assert set(await origins(server, workers)) == workers

    reloaded = await server.reload()  # the code fixed, a reload goes through
    assert reloaded.returncode == 0, reloaded.output


@pytest.mark.parametrize("options", [(), ("--no-fork-server",)], ids=["fork-server", "spawn"])
def test_a_killed_supervisor_leaves_no_process_behind(
    tmp_path: Path, servers: list[ServerProcess], broken: Path, options: tuple[str, ...]
) -> None:
    server = serve(tmp_path, servers, broken, *options)
    workers, fork_servers = pool(server)
    processes = workers | set(fork_servers)
    assert len(processes) == WORKERS + (0 if options else 1)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    until(lambda: all(gone(pid) for pid in processes), "every worker and fork server gone")


async def test_without_the_fork_server_workers_start_from_fresh_interpreters(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken, "--no-fork-server")
    workers, fork_servers = pool(server)
    assert fork_servers == []
    for pid, answer in (await origins(server, workers)).items():
        assert not answer["forked"]
        assert parent_of(pid) == server.process.pid
    reloaded = await server.reload()
    assert reloaded.returncode == 0, reloaded.output


async def test_a_fork_server_that_cannot_start_leaves_its_generation_to_fresh_interpreters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a fork server that exits at once
    config = ServeConfig(app=APP, binds=["127.0.0.1:0"])
    listeners = Listeners.bind(config)
    forks = ForkServers()
    try:
        with caplog.at_level(logging.WARNING, "quart_waffle.supervisor"):
            assert await forks.get(config, listeners, 0, None) is None
            assert await forks.get(config, listeners, 0, None) is None
    finally:
        await forks.close()
        listeners.close()
    unavailable = [r for r in caplog.records if "Fork server of generation 0" in r.message]
    assert len(unavailable) == 1  # logged once
    assert forks.pids() == []


async def test_a_fork_server_that_dies_is_started_again_for_the_next_worker(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken)
    workers, [fork_server] = pool(server)
    os.kill(fork_server, signal.SIGKILL)
    until(lambda: gone(fork_server), "the fork server gone")
    assert set(await origins(server, workers)) == workers  # the workers it forked serve on
    server.process.send_signal(signal.SIGTTIN)
    until(lambda: len(pool(server)[0]) == WORKERS + 1, "a worker added")
    added, [new_fork_server] = pool(server)
    assert new_fork_server != fork_server
    [new] = added - workers
    assert (await origins(server, added))[new]["forked"]
