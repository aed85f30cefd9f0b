"""`serve` and `reload` against another local user and absurd options: the control socket
cannot be squatted, a live unix bind is never stolen, numbers are checked."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ROOT
from quart_waffle.supervisor.config import (
    ServeConfig,
    control_socket_beside,
    private_control_socket,
)
from tests.supervisor_apps.harness import COMMAND, ServerProcess, quart_waffle
from tests.test_supervisor_cli import APP, assert_one_line_error

pytestmark = pytest.mark.timeout(60)

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture(name="shared_tmp")
def _shared_tmp() -> Iterator[str]:
    """A world-writable sticky directory, as /tmp (pytest's own are closed to other users)."""
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o1777)
        yield directory


def _squat_socket(path: str) -> None:
    """Leave at `path` a socket owned by another user, as that user could."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatted:
        squatted.bind(path)
    os.chown(path, NOBODY, NOBODY)


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if match := re.search(pattern, log.read_text(errors="replace")):
            return match
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in the log:\n{log.read_text(errors='replace')}")


@as_root
def test_a_squatted_temporary_path_does_not_stop_serve(tmp_path: Path, shared_tmp: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"} | {"TMPDIR": shared_tmp}
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        # The shell waits for a line, then becomes `serve` with the same pid: its pid is known
        # before it starts, as an attacker guessing the next pids would know it.
        process = subprocess.Popen(
            ["sh", "-c", 'read go && exec "$0" "$@"', *COMMAND, "serve", APP, "-b", "127.0.0.1:0"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _squat_socket(os.path.join(shared_tmp, f"quart-waffle-{process.pid}.sock"))
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
        control = _wait_for(log, r"control socket (\S+)\)", process).group(1)
        _wait_for(log, "Serving with workers", process)
        directory = os.lstat(os.path.dirname(control))
        assert os.path.dirname(os.path.dirname(control)) == shared_tmp
        assert directory.st_uid == os.geteuid()
        assert stat.S_IMODE(directory.st_mode) == 0o700
        reloaded = quart_waffle("reload", "--control-socket", control)
        assert reloaded.returncode == 0, reloaded.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not os.path.exists(os.path.dirname(control))  # the private directory is removed
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_the_runtime_directory_is_used_only_when_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with private_control_socket() as path:
        assert path == str(runtime / f"quart-waffle-{os.getpid()}.sock")
    assert runtime.is_dir()

    runtime.chmod(0o777)  # a runtime directory others may write to is not used
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # read TMPDIR again
    try:
        with private_control_socket() as path:
            directory = Path(path).parent
            assert directory.parent == tmp_path
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert not directory.exists()
    finally:
        tempfile.tempdir = None


def test_reload_finds_the_control_socket_beside_the_pid_file(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, APP, [], {})
    try:
        control = control_socket_beside(server.pid_file)
        assert stat.S_IMODE(os.lstat(control).st_mode) == 0o600
        reloaded = quart_waffle("reload", "--pid-file", server.pid_file)
        assert reloaded.returncode == 0, reloaded.stderr
        assert "reload 1 done" in reloaded.stdout
    finally:
        server.close()
    assert not os.path.exists(control)


def test_a_control_socket_path_too_long_is_one_line(tmp_path: Path) -> None:
    long_path = str(tmp_path / ("s" * 120))
    served = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--control-socket", long_path)
    assert_one_line_error(served, "the path is too long for a unix socket")
    reloaded = quart_waffle("reload", "--control-socket", long_path)
    assert_one_line_error(reloaded, "the path is too long for a unix socket")


def _get_over_unix(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := client.recv(4096):
            response += chunk
    return response


def test_a_second_serve_never_takes_a_live_unix_bind(tmp_path: Path) -> None:
    path = str(tmp_path / "http.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # left by a server that died: replaced
    server = ServerProcess(tmp_path, APP, ["-b", f"unix:{path}"], {})
    try:
        inode = os.lstat(path).st_ino
        second = quart_waffle("serve", APP, "-b", f"unix:{path}", "--control-socket", f"{path}.c")
        assert_one_line_error(
            second, f"cannot listen on unix:{path}: address in use (another process listens on it)"
        )
        assert os.lstat(path).st_ino == inode
        assert _get_over_unix(path).startswith(b"HTTP/1.1 200")
    finally:
        server.close()


@as_root
def test_a_unix_bind_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "http.sock")
    _squat_socket(path)
    result = quart_waffle("serve", APP, "-b", f"unix:{path}")
    assert_one_line_error(result, f"unix:{path}: belongs to uid {NOBODY}, not to this user")
    assert os.lstat(path).st_uid == NOBODY


@pytest.mark.parametrize("kind", ["file", "link to a socket"])
def test_a_unix_bind_on_something_else_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "http.sock"
    if kind == "file":
        path.write_text("keep me\n")
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as target:
            target.bind(str(tmp_path / "target.sock"))
        path.symlink_to(tmp_path / "target.sock")
    result = quart_waffle("serve", APP, "-b", f"unix:{path}")
    assert_one_line_error(result, f"unix:{path}: exists and is not a socket")
    assert os.path.lexists(path)
    assert (tmp_path / "target.sock").exists() or path.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--graceful-timeout", "inf"], "argument --graceful-timeout: must be a number"),
        (["--graceful-timeout", "1e308"], "argument --graceful-timeout: must be from 0.001 to"),
        (["--startup-timeout", "nan"], "argument --startup-timeout: must be a number"),
        (["--keep-alive-timeout", "0"], "argument --keep-alive-timeout: must be from 0.001 to"),
        (["--timeout", "-1"], "argument --timeout: must be from 0 to 86400, got -1"),
        (["--backlog", "99999999999"], "argument --backlog: must be from 1 to 65535"),
        (["--backlog", "0"], "argument --backlog: must be from 1 to 65535, got 0"),
        (["-w", "1_0"], "argument -w/--workers: must be an integer"),
        (["-w", "\u0663"], "argument -w/--workers: must be an integer"),  # an Arabic-Indic 3
        (["--min-active", "-1"], "argument --min-active: must be from 0 to 1024"),
        (["--max-surge", "99999999999"], "argument --max-surge: must be from 0 to 1024"),
        (["--native-accept"], "native_accept needs a uvloop worker class"),
    ],
)
def test_serve_numbers_out_of_bounds_are_one_line(args: list[str], message: str) -> None:
    assert_one_line_error(quart_waffle("serve", APP, "-b", "127.0.0.1:0", *args), message)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("inf", "must be a number"),
        ("1e308", "must be from 0.001 to 86400, got 1e+308"),
        ("nan", "must be a number"),
        ("-1", "must be from 0.001 to 86400, got -1.0"),
        ("0", "must be from 0.001 to 86400, got 0.0"),
    ],
)
def test_reload_timeouts_out_of_bounds_are_one_line(
    tmp_path: Path, timeout: str, message: str
) -> None:
    path = str(tmp_path / "control.sock")
    result = quart_waffle("reload", "--control-socket", path, "--timeout", timeout)
    assert_one_line_error(result, f"argument --timeout: {message}")
    assert "reach" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("graceful_timeout", math.inf),
        ("startup_timeout", math.nan),
        ("keep_alive_timeout", -1.0),
        ("timeout", math.nan),
        ("backlog", 2**40),
        ("workers", 0),
        ("max_surge", -1),
    ],
)
def test_serve_config_refuses_numbers_out_of_bounds(option: str, value: float) -> None:
    changed: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=f"^{option} must be from "):
        ServeConfig(app=APP, **changed)
