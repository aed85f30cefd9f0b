"""The fork server, on real processes: each generation's workers are forked by a fork server and
adopted by the supervisor; a reload reuses the fork server until a file it imported changes
or `reload --fresh-fork-server` asks for a new one;
`--preload-app` imports the app once, in the fork server (a new one per reload); a
reload under load fails no request; broken code fails the reload and the old generation keeps
serving; a killed supervisor leaves no process behind; without a fork server (the option off,
or one that cannot start) workers start from fresh interpreters; one that stalls is retired, and
its late answer taken by no one; adopted processes nothing waits for are reaped; a malformed
request is answered an error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.http import http_request
from harness.load import run_load
from quart_waffle.supervisor import procfs
from quart_waffle.supervisor.config import ServeConfig
from quart_waffle.supervisor.forkserver import ForkServers
from quart_waffle.supervisor.listeners import Listeners
from quart_waffle.supervisor.zygote import CHECK, ERROR, FRESH, READY, ZygoteSpec
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


def serve(
    tmp_path: Path,
    servers: list[ServerProcess],
    broken: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    server = ServerProcess(
        tmp_path,
        APP,
        ["-w", str(WORKERS), "--keep-alive-timeout", "1", "--graceful-timeout", "5", *args],
        {"WAFFLE_TEST_BROKEN": str(broken), **(env or {})},
    )
    servers.append(server)
    return server


def parent_of(pid: int) -> int:
    status = procfs.status(pid)
    assert status is not None, f"process {pid} is gone"
    return status.parent


def gone(pid: int) -> bool:
    status = procfs.status(pid)
    return status is None or status.state == "Z"


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


async def test_a_reload_reuses_the_fork_server_until_a_file_it_imported_changes_or_asked(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    # Every interpreter imports sitecustomize at start: a file the fork server imported.
    site = tmp_path / "site"
    site.mkdir()
    imported = site / "sitecustomize.py"
    imported.write_text("RELEASE = 1\n")
    await asyncio.sleep(0.6)  # a file changed as a fork server starts would never be trusted
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    server = serve(tmp_path, servers, broken, env={"PYTHONPATH": path})
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
    assert f"Fork server {fork_server} forks generation 1's workers too" in server.log()
    new_workers, fork_servers = pool(server)
    assert fork_servers == [fork_server]
    assert not new_workers & workers
    for pid, answer in (await origins(server, new_workers)).items():
        assert answer["forked"]
        assert parent_of(pid) == supervisor
        assert answer["generation"] == "1"
    assert all(gone(pid) for pid in workers)

    await asyncio.to_thread(imported.write_text, "RELEASE = 2\n")
    reloaded = await server.reload()
    assert reloaded.returncode == 0, reloaded.output
    assert f"Fork server {fork_server} is not reused: {imported} changed" in server.log()
    until(lambda: len(pool(server)[1]) == 1 and gone(fork_server), "the old fork server gone")
    last_workers, [new_fork_server] = pool(server)
    assert new_fork_server != fork_server
    assert not last_workers & new_workers
    for answer in (await origins(server, last_workers)).values():
        assert answer["forked"]
        assert answer["generation"] == "2"

    # Nothing changed since, but a reload asks for a fresh fork server, and fails (the app's
    # new version is broken): the reload that follows, without the option, still gets one.
    await asyncio.to_thread(broken.touch)
    failed = await server.reload("--fresh-fork-server")
    assert failed.returncode == 1, failed.output
    assert "a fork server started for it will fork the new workers" in failed.output
    await asyncio.to_thread(broken.unlink)
    # the fork server started for the failed reload exits once it is over
    until(lambda: len(pool(server)[1]) == 1, "the failed reload's fork server gone")
    for options, fresh in (((), True), (("--fresh-fork-server",), True), ((), False)):
        previous_workers, [previous] = pool(server)
        reloaded = await server.reload(*options)
        assert reloaded.returncode == 0, reloaded.output
        if fresh:
            until(lambda p=previous: len(pool(server)[1]) == 1 and gone(p), "the old one gone")
        workers_now, [fork_server_now] = pool(server)
        assert (fork_server_now != previous) == fresh
        assert not workers_now & previous_workers
        assert all(parent_of(pid) == supervisor for pid in workers_now)


async def test_preload_app_imports_the_app_once_in_the_fork_server(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken, "--preload-app")
    workers, [fork_server] = pool(server)
    for pid, answer in (await origins(server, workers)).items():
        assert answer["imported_by"] == fork_server != pid

    reloaded = await server.reload()  # the app's module is imported anew: a new fork server
    assert reloaded.returncode == 0, reloaded.output
    until(lambda: len(pool(server)[1]) == 1 and gone(fork_server), "the old fork server gone")
    workers, [new_fork_server] = pool(server)
    for answer in (await origins(server, workers)).values():
        assert answer["imported_by"] == new_fork_server != fork_server


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
    server.wait_for_log(rf"Fork server {fork_server} of generation \d+ exited with code -9")
    assert set(await origins(server, workers)) == workers  # the workers it forked serve on
    server.process.send_signal(signal.SIGTTIN)
    until(lambda: len(pool(server)[0]) == WORKERS + 1, "a worker added")
    added, [new_fork_server] = pool(server)
    assert new_fork_server != fork_server
    [new] = added - workers
    assert (await origins(server, added))[new]["forked"]


def children(pid: int) -> tuple[set[int], set[int]]:
    """The children of `pid`: all of them, and those exited but not reaped (zombies)."""
    found = procfs.children(pid)
    return found, {child for child in found if gone(child)}


@pytest.mark.timeout(180)
async def test_a_stalled_fork_server_is_retired_and_its_late_answer_taken_by_no_one(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    server = serve(tmp_path, servers, broken)
    workers, [fork_server] = pool(server)
    os.kill(fork_server, signal.SIGSTOP)
    try:
        lost = min(workers)
        os.kill(lost, signal.SIGKILL)  # its replacement is asked of the stalled fork server
        server.wait_for_log(rf"fork server {fork_server}: TimeoutError\(\): starting the worker")
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by now, or it answers late
            os.kill(fork_server, signal.SIGCONT)
    until(lambda: gone(fork_server), "the stalled fork server killed")
    until(lambda: len(pool(server)[0]) == WORKERS, "the lost worker replaced")
    # Forked by a new fork server, and told their own pids; one at a time (signals coalesce).
    server.process.send_signal(signal.SIGTTIN)
    until(lambda: len(pool(server)[0]) == WORKERS + 1, "a worker added")
    server.process.send_signal(signal.SIGTTIN)
    until(lambda: len(pool(server)[0]) == WORKERS + 2, "another worker added")
    until(lambda: len(pool(server)[1]) == 1, "one fork server")
    workers, [new_fork_server] = pool(server)
    assert new_fork_server != fork_server
    answers = await origins(server, workers)  # those serving are exactly those reported
    assert sum(answer["forked"] for answer in answers.values()) == WORKERS + 1
    supervisor = server.process.pid
    until(
        lambda: children(supervisor) == (workers | {new_fork_server}, set()),
        "no child of the supervisor but its workers and fork server, and no zombie",
    )
    assert "exit code 0" not in server.log()


def test_adopted_processes_nothing_waits_for_are_reaped(tmp_path: Path) -> None:
    script = """
import asyncio, os
from pathlib import Path
from quart_waffle.supervisor.forkserver import become_subreaper
from quart_waffle.supervisor.orphans import exited_children, reap_orphans

async def main() -> None:
    assert become_subreaper()
    reaper = asyncio.create_task(reap_orphans(set))
    orphaned = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.2 & echo $!", stdout=-1)
    orphan = int((await orphaned.stdout.read()).decode())
    assert await orphaned.wait() == 0
    for _ in range(20):  # its own children keep their exit status meanwhile
        assert await (await asyncio.create_subprocess_exec("sh", "-c", "exit 3")).wait() == 3
    while Path(f"/proc/{orphan}").exists():
        await asyncio.sleep(0.1)
    reaper.cancel()
    print(orphan, exited_children())

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=1)[1].strip() == "set()"


@pytest.fixture(name="zygote")
def _zygote(tmp_path: Path) -> Iterator[socket.socket]:
    """A fork server started as the supervisor starts one, and its channel once it is ready."""
    ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    spec = ZygoteSpec(APP, "hypercorn", False, its.fileno(), time.time_ns() - 10**9)
    code = "from quart_waffle.supervisor.zygote import run; run()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, spec.to_json()],
        pass_fds=[its.fileno()],
        stdin=subprocess.DEVNULL,
    )
    its.close()
    ours.settimeout(60)
    try:
        assert ours.recv(4096) == READY.encode()
        yield ours
        ours.close()
        assert process.wait(10) == 0  # it served on, and left when its channel closed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    "request_",
    [b"not json", b"[1]", b'{"app": 1}', b"\xff", b"[" * 60_000],
    ids=["text", "list", "fields", "bytes", "deep"],
)
def test_a_malformed_request_is_answered_an_error(zygote: socket.socket, request_: bytes) -> None:
    for attached in (1, 0, 2):
        ends = [socket.socketpair() for _ in range(attached)]
        socket.send_fds(zygote, [request_], [theirs.fileno() for _ours, theirs in ends])
        for _ours, theirs in ends:
            theirs.close()
        assert zygote.recv(4096).decode().startswith(f"{ERROR} ")
        for ours, _theirs in ends:
            ours.settimeout(10)
            assert ours.recv(1) == b""  # what the request carried is closed
            ours.close()


def test_a_check_of_what_nothing_changed_is_answered_fresh(zygote: socket.socket) -> None:
    for generation in (7, 8):
        zygote.send(f"{CHECK} {generation}".encode())
        assert zygote.recv(4096) == FRESH.encode()


async def test_a_drained_worker_leaves_what_its_open_files_hold_written(
    tmp_path: Path, servers: list[ServerProcess], broken: Path
) -> None:
    notes = tmp_path / "notes"
    server = serve(tmp_path, servers, broken, env={"WAFFLE_TEST_NOTES": str(notes)})
    for _ in range(20):
        code, body = await http_request(
            server.port, "GET", "/note", headers={"Connection": "close"}, within=30
        )
        assert code == 200, body
    assert notes.read_text() == ""  # still in the workers' buffers
    assert server.stop() == 0
    assert len(notes.read_text().splitlines()) == 20
