"""Operating `quart-waffle serve`: systemd's notifications and socket activation, TTIN/TTOU,
USR1 and moved log files, `stop` and `workers`, process titles. Real supervisors, real sockets."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness.http import http_get
from harness.ports import free_port
from quart_waffle.supervisor.tcpinfo import listen_backlog
from tests.supervisor_apps.harness import ServerProcess, quart_waffle, status

APP = "tests.supervisor_apps.testapp:app"
WAIT = 30.0

pytestmark = pytest.mark.timeout(90)


def until(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {within} s")
        time.sleep(0.05)


def wants(server: ServerProcess, count: int) -> bool:
    return bool(status(server)["workers_wanted"] == count)


def serving(server: ServerProcess) -> list[dict[str, Any]]:
    return [w for w in status(server)["workers"] if w["state"] == "serving"]


@pytest.fixture(name="servers")
def _servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.close()


@pytest.fixture(name="notifications")
def _notifications() -> Iterator[Notifications]:
    notifications = Notifications()
    yield notifications
    notifications.socket.close()


class Notifications:
    """A unix datagram socket in the abstract namespace, as systemd's NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.address = f"@quart-waffle-test-{secrets.token_hex(8)}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.address[1:])
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, within: float = WAIT) -> dict[str, str]:
        """The first message (after those already taken) setting `key` (to `value`)."""
        deadline = time.monotonic() + within
        while True:
            for index, message in enumerate(self.messages):
                if key in message and value in (None, message[key]):
                    del self.messages[: index + 1]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value} within {within} s: {self.messages}")
            self.socket.settimeout(remaining)
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            lines = data.decode().splitlines()
            self.messages.append(dict(line.split("=", 1) for line in lines))


def test_sd_notify_ready_reloading_stopping_status_watchdog(
    tmp_path: Path, servers: list[ServerProcess], notifications: Notifications
) -> None:
    # SPT_NOENV: setproctitle leaves /proc/PID/environ alone, so the test can read it.
    env = {"NOTIFY_SOCKET": notifications.address, "WATCHDOG_USEC": "400000", "SPT_NOENV": "1"}
    server = ServerProcess(tmp_path, APP, ["-w", "2"], env)
    servers.append(server)
    ready = notifications.wait_for("READY", "1")
    assert ready["STATUS"] == "serving, generation 0; workers: 2 serving"
    notifications.wait_for("WATCHDOG", "1")
    workers = [w["pid"] for w in status(server)["workers"]]
    for pid in workers:  # the variables are the supervisor's: a worker never notifies
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environment if v.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_"))]

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    server.process.send_signal(signal.SIGHUP)
    reloading = notifications.wait_for("RELOADING", "1")
    assert before <= int(reloading["MONOTONIC_USEC"]) <= before + 10_000_000
    assert reloading["STATUS"].startswith("reloading, generation 0")
    ready = notifications.wait_for("READY", "1")
    assert ready["STATUS"].startswith("serving, generation 1; workers: 2 serving")

    server.process.send_signal(signal.SIGTERM)
    stopping = notifications.wait_for("STOPPING", "1")
    assert stopping["STATUS"].startswith("stopping, generation 1")
    assert server.process.wait(WAIT) == 0


LAUNCHER = """
import os, sys
os.dup2(int(os.environ.pop("TEST_LISTEN_FD")), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="http")
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.parametrize("options", [("-k", "hypercorn"), ("-k", "uvicorn", "--native-accept")])
def test_socket_activation_serves_the_passed_socket(
    tmp_path: Path, servers: list[ServerProcess], options: tuple[str, ...]
) -> None:
    passed = socket.socket()
    passed.bind(("127.0.0.1", 0))
    passed.listen(64)
    ours = passed.dup()  # the same socket, to read its backlog once the workers listen
    port = passed.getsockname()[1]
    unused = free_port()
    server = ServerProcess(
        tmp_path,
        APP,
        list(options),
        {"TEST_LISTEN_FD": str(passed.fileno()), "SPT_NOENV": "1"},
        launcher=[sys.executable, "-c", LAUNCHER],
        pass_fds=[passed.fileno()],
        bind=["-b", f"127.0.0.1:{unused}"],
    )
    servers.append(server)
    passed.close()  # the supervisor holds its own copy now
    assert server.port == port
    assert "Using 1 socket(s) passed by the service manager" in server.log()
    assert http_get_sync(port, "/whoami")[0] == 200
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", unused))  # --bind was not bound
    worker = status(server)["workers"][0]["pid"]
    environment = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    assert not [v for v in environment if v.startswith(b"LISTEN_")]
    # the queue stays as the service manager made it (not --backlog's 1024), even where the
    # worker's event loop listens again (uvloop's own server, with --native-accept)
    assert listen_backlog(ours) == 64
    ours.close()


def http_get_sync(port: int, path: str) -> tuple[int, bytes]:
    return asyncio.run(http_get(port, path, within=10))


def test_ttin_and_ttou_change_the_worker_count(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    server = ServerProcess(tmp_path, APP, ["-w", "2"], {})
    servers.append(server)
    server.process.send_signal(signal.SIGTTIN)
    until(lambda: len(serving(server)) == 3, "3 serving")
    assert status(server)["workers_wanted"] == 3
    for wanted in (2, 1):  # one at a time: a signal sent while one is pending merges with it
        server.process.send_signal(signal.SIGTTOU)
        until(partial(wants, server, wanted), f"{wanted} wanted")
    until(lambda: len(status(server)["workers"]) == 1, "down to 1 worker")
    server.process.send_signal(signal.SIGTTOU)
    server.wait_for_log(r"Keeping 1 worker\(s\): the count is from 1 to 1024")
    assert status(server)["workers_wanted"] == 1
    assert http_get_sync(server.port, "/whoami")[0] == 200


def test_usr1_reopens_moved_log_files(tmp_path: Path, servers: list[ServerProcess]) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    logs = ["--access-logfile", str(access), "--error-logfile", str(errors)]
    server = ServerProcess(tmp_path, APP, logs, {}, log_file=errors)
    servers.append(server)
    # The access log names the path (no query string): these two paths are unknown, 404.
    assert http_get_sync(server.port, "/before-rotation")[0] == 404
    until(lambda: "/before-rotation" in access.read_text(), "the request in the access log")
    access.rename(tmp_path / "access.log.1")
    errors.rename(tmp_path / "error.log.1")
    server.process.send_signal(signal.SIGUSR1)
    until(errors.exists, "a new error log")  # the supervisor logs that it reopened
    until(access.exists, "a new access log")
    assert http_get_sync(server.port, "/after-rotation")[0] == 404
    until(lambda: "/after-rotation" in access.read_text(), "the next request in the new log")
    assert "/after-rotation" not in (tmp_path / "access.log.1").read_text()
    assert "Reopened the log files" in errors.read_text()
    assert status(server)["state"] == "serving"  # USR1 killed no worker


def test_workers_and_stop_commands(tmp_path: Path, servers: list[ServerProcess]) -> None:
    server = ServerProcess(tmp_path, APP, ["-w", "2"], {})
    servers.append(server)
    state = status(server)
    assert state["pid"] == server.process.pid
    assert (state["state"], state["generation"], state["workers_wanted"]) == ("serving", 0, 2)
    pids = {w["pid"] for w in state["workers"]}
    assert len(pids) == 2
    assert all(w["generation"] == 0 and w["age"] > 0 for w in state["workers"])

    for _ in range(5):
        assert http_get_sync(server.port, "/whoami")[0] == 200
    # Counts come with each heartbeat (every second with the default --timeout).
    until(lambda: sum(w["requests"] or 0 for w in status(server)["workers"]) == 5, "5 counted")

    text = quart_waffle("workers", "--pid-file", server.pid_file)
    assert text.returncode == 0, text
    assert f"supervisor {server.process.pid} serving: {APP}, generation 0" in text.stdout
    for pid in pids:
        assert re.search(rf"^{pid}  0    serving  \d+\.\ds  +\d+$", text.stdout, re.MULTILINE)

    stopped = quart_waffle("stop", "--pid-file", server.pid_file)
    assert (stopped.returncode, stopped.stdout) == (0, f"supervisor {server.process.pid} stopped\n")
    assert server.process.poll() == 0  # it had exited when stop returned
    # its answer to `stop` was not cancelled half-way as it exited (a traceback on 3.11)
    assert "Traceback" not in server.log(), server.log()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)

    gone = quart_waffle("workers", "--pid-file", server.pid_file)
    assert gone.returncode == 1
    assert len(gone.stderr.strip().splitlines()) == 1
    assert "cannot reach the supervisor" in gone.stderr


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def test_process_titles_name_the_app_and_generation(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    pytest.importorskip("setproctitle")
    server = ServerProcess(tmp_path, APP, [], {})
    servers.append(server)

    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

    assert title(server.process.pid) == f"quart-waffle: master {APP} gen 0"
    worker = status(server)["workers"][0]["pid"]
    assert title(worker) == f"quart-waffle: worker {APP} gen 0"
    assert quart_waffle("reload", "--pid-file", server.pid_file).returncode == 0
    assert title(server.process.pid) == f"quart-waffle: master {APP} gen 1"
    worker = status(server)["workers"][0]["pid"]
    assert title(worker) == f"quart-waffle: worker {APP} gen 1"


def test_supervisor_stops_on_sigquit(tmp_path: Path, servers: list[ServerProcess]) -> None:
    server = ServerProcess(tmp_path, APP, [], {})
    servers.append(server)
    server.process.send_signal(signal.SIGQUIT)
    assert server.process.wait(WAIT) == 0
    assert "Stopping: draining the workers" in server.log()
