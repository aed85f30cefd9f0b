"""`quart-waffle serve` and `reload` as a user runs them: one-line errors, the pid file and the
control socket handled safely, app factories, help and version."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from quart_waffle.supervisor.control import MAX_COMMAND, serve_control
from quart_waffle.supervisor.pool import Progress
from tests.supervisor_apps.harness import COMMAND, ServerProcess, quart_waffle

APP = "tests.supervisor_apps.testapp:app"

pytestmark = pytest.mark.timeout(60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr


@pytest.fixture(name="busy_port")
def _busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "127.0.0.1:99999"], "bind '127.0.0.1:99999': the port must be a number"),
        (["-b", "127.0.0.1:http"], "bind '127.0.0.1:http': the port must be a number"),
        (["-b", "no-such-host.invalid:80"], "cannot listen on no-such-host.invalid:80"),
        (["-w", "0"], "argument -w/--workers: must be from 1 to 1024, got 0"),
        (["-w", "many"], "argument -w/--workers: must be an integer"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--max-surge", "0"], "a reload could replace no worker"),
        (["--max-surge", "-1"], "argument --max-surge: must be from 0 to 1024, got -1"),
        (["--timeout", "-1"], "argument --timeout: must be from 0 to"),
    ],
)
def test_serve_errors_are_one_line(args: list[str], message: str) -> None:
    assert_one_line_error(quart_waffle("serve", APP, *args), message)


def test_address_in_use_is_one_line(busy_port: int) -> None:
    result = quart_waffle("serve", APP, "-b", f"127.0.0.1:{busy_port}")
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{busy_port}: [Errno 98]")


@pytest.mark.parametrize(
    "app", ["module:1 + 1", "module:create_app(os.system('true'))", "module:f(**kwargs)", ":app"]
)
def test_an_app_that_is_not_a_name_or_a_literal_call_is_refused(app: str) -> None:
    assert_one_line_error(quart_waffle("serve", app), "expected module:name or module:factory")


def test_reload_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sock"
    assert_one_line_error(
        quart_waffle("reload", "--control-socket", str(missing)),
        f"cannot reach the supervisor at {missing}: No such file or directory",
    )
    assert_one_line_error(
        quart_waffle("reload", "--pid-file", str(tmp_path / "none.pid")),
        "No such file or directory",
    )
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not a pid\n")
    assert_one_line_error(
        quart_waffle("reload", "--pid-file", str(garbage)), "does not hold a process id"
    )


def test_reload_timeout_says_it_timed_out(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen()  # accepts (through the backlog), never answers
        result = quart_waffle("reload", "--control-socket", path, "--timeout", "0.5")
    assert_one_line_error(result, "reload timed out: no outcome within 0.5 s")
    assert "reach" not in result.stderr


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, APP, ["-w", "1"], {})
    try:
        target = f"--pid-file {server.pid_file}"
        for args in (f"workers {target}", f"workers --json {target}"):
            # `true` exits without reading: every write of the command meets a closed pipe
            result = subprocess.run(
                ["bash", "-c", f"set -o pipefail; {COMMAND[0]} {args} | true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.stderr == "", (args, result.stderr)
            assert result.returncode == 1, args
    finally:
        server.close()


def test_a_live_pid_file_stops_a_second_serve(tmp_path: Path) -> None:
    pid_file = tmp_path / "serve.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test process is alive
    result = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--pid-file", str(pid_file))
    assert_one_line_error(result, f"process {os.getpid()} is running")
    assert pid_file.read_text() == f"{os.getpid()}\n"


def test_a_second_serve_on_the_same_pid_file_refuses(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, APP, [], {})
    try:
        result = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--pid-file", server.pid_file)
        assert_one_line_error(result, f"process {server.process.pid} is running")
        assert Path(server.pid_file).read_text() == f"{server.process.pid}\n"
    finally:
        server.close()


def test_pid_files_are_never_followed_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "serve.pid"
    link.symlink_to(target)

    served = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--pid-file", str(link))
    assert_one_line_error(served, "is a symbolic link: refusing to follow it")
    reloaded = quart_waffle("reload", "--pid-file", str(link))
    assert_one_line_error(reloaded, "Too many levels of symbolic links")
    assert target.read_text() == "keep me\n"
    assert link.is_symlink()


def test_a_stale_pid_file_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file = tmp_path / "serve.pid"
    pid_file.write_text(f"{dead.pid}\n")
    server = ServerProcess(tmp_path, APP, [], {})
    try:
        assert Path(server.pid_file).read_text() == f"{server.process.pid}\n"
    finally:
        server.close()
    assert not pid_file.exists()


@pytest.fixture(name="socket_path")
def _socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "control.sock")


def test_something_else_at_the_control_socket_path_stops_serve(socket_path: str) -> None:
    Path(socket_path).write_text("a file\n")
    result = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--control-socket", socket_path)
    assert_one_line_error(result, "exists and is not a socket")
    assert Path(socket_path).read_text() == "a file\n"


def test_a_control_socket_in_use_stops_serve(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(socket_path)
        listening.listen()
        result = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--control-socket", socket_path)
    assert_one_line_error(result, "address in use (another process listens on it)")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a socket as another user")
def test_a_control_socket_of_another_user_stops_serve(socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squatted:
        squatted.bind(socket_path)
    os.chown(socket_path, 65534, 65534)
    result = quart_waffle("serve", APP, "-b", "127.0.0.1:0", "--control-socket", socket_path)
    assert_one_line_error(result, "belongs to uid 65534, not to this user")
    assert os.lstat(socket_path).st_uid == 65534


def test_a_stale_control_socket_is_replaced_and_made_private(
    tmp_path: Path, socket_path: str
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(socket_path)  # never listened on: nobody answers there
    server = ServerProcess(tmp_path, APP, ["--control-socket", socket_path], {})
    try:
        assert stat.S_IMODE(os.lstat(socket_path).st_mode) == 0o600
        reloaded = quart_waffle("reload", "--control-socket", socket_path, timeout=60)
        assert reloaded.returncode == 0, reloaded.stderr
        assert "reload 1 done" in reloaded.stdout
    finally:
        server.close()
    assert not os.path.exists(socket_path)


async def test_the_control_socket_is_created_private(
    socket_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "chmod", lambda *_args: None)  # no chmod after the fact
    previous = os.umask(0)
    try:
        server = await serve_control(socket_path, _never_reloads)
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.lstat(socket_path).st_mode) == 0o600
    finally:
        server.close()
        await server.wait_closed()


async def _never_reloads(_progress: Progress, _fresh_fork_server: bool) -> str:
    raise AssertionError("no reload expected")


async def test_an_oversized_control_message_is_refused_without_a_traceback(
    socket_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await serve_control(socket_path, _never_reloads)
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path)
        writer.write(b"reload" * (MAX_COMMAND * 10) + b"\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readline()
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert answer == f"error command longer than {MAX_COMMAND} bytes\n".encode()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a server as another user")
def test_reload_refuses_a_supervisor_run_by_another_user() -> None:
    # pytest's own temporary directories are closed to other users
    with tempfile.TemporaryDirectory() as shared:
        os.chmod(shared, 0o777)
        path = os.path.join(shared, "impostor.sock")
        with subprocess.Popen(
            [
                "python3",
                "-c",
                "import os, socket, sys\n"
                "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
                "os.chmod(sys.argv[1], 0o666); print('ready', flush=True)\n"
                "c, _ = s.accept(); c.recv(100); c.sendall(b'ok reload 1 done: workers []\\n')\n",
                path,
            ],
            user=65534,
            stdout=subprocess.PIPE,
            text=True,
        ) as impostor:
            try:
                assert impostor.stdout is not None
                assert impostor.stdout.readline() == "ready\n"
                result = quart_waffle("reload", "--control-socket", path)
            finally:
                impostor.kill()
    assert_one_line_error(result, "is served by uid 65534, not by this user: refusing it")
    assert "done" not in result.stdout


def test_serve_runs_an_app_factory_with_arguments(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "tests.supervisor_apps.testapp:create_app('bonjour')", [], {})
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := client.recv(4096):
                response += chunk
    finally:
        server.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["greeting"] == "bonjour"


def test_version_and_help() -> None:
    version = quart_waffle("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("quart-waffle ")
    for command in ("serve", "reload"):
        shown = quart_waffle(command, "--help")
        assert shown.returncode == 0
        # One block per option: its flags, then its help on this or the following lines.
        blocks = [b for b in shown.stdout.split("\n  -")[1:] if not b.startswith("h, --help")]
        assert blocks
        for block in blocks:
            assert "(default:" in " ".join(block.split()), block


async def test_closing_the_control_server_waits_for_the_commands_being_answered(
    socket_path: str,
) -> None:
    """The supervisor answers `stop` as it exits: the handler must finish, not be cancelled
    by the end of the event loop (which Python 3.11 logged as a traceback)."""
    release = asyncio.Event()

    async def stop() -> None:
        await release.wait()

    server = await serve_control(socket_path, _never_reloads, stop=stop)
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(b"stop\n")
        assert await reader.readline() == b"ok stopping\n"
        server.close()
        closing = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.2)
        assert not closing.done(), "the stop being answered was not waited for"
        release.set()
        async with asyncio.timeout(5):
            await closing
            assert await reader.read() == b""  # closed by its handler
    finally:
        writer.close()
