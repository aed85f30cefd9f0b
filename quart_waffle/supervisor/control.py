"""The control socket: how `quart-waffle reload`, `stop` and `workers` talk to a running
supervisor.

The protocol is line based: the client sends one command line, the supervisor answers.

- ``reload``: any number of ``progress <message>`` lines, then ``ok <summary>`` or
  ``error <reason>``. ``reload fresh-fork-server``: the same, its workers forked by a fork
  server started for it.
- ``stop``: ``ok stopping``; the supervisor drains its workers, closes the connection and
  exits.
- ``status``: ``ok <JSON>``, the supervisor's state, generation and workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from .errors import ReloadFailed, ServeError
from .pool import Progress
from .unixsocket import check_length, clear_for_bind

Reload = Callable[[Progress, bool], Awaitable[str]]
"""Runs a rolling reload, telling `Progress`; True asks for a fresh fork server."""
Stop = Callable[[], Awaitable[None]]
Status = Callable[[], dict[str, Any]]

RELOAD = "reload"
FRESH_RELOAD = "reload fresh-fork-server"
COMMAND_TIMEOUT = 5.0
HANDLERS_TIMEOUT = 2.0  # for the commands being answered once the supervisor stops
MAX_COMMAND = 1024  # bytes of one command line; longer ones are refused


class ControlServer:
    """The control socket's server. `wait_closed` also waits, `HANDLERS_TIMEOUT` at most, for
    the commands being answered: the supervisor's `stop` is answered as it exits, and a
    handler cancelled by the event loop's end made Python 3.11 log a traceback."""

    def __init__(self, server: asyncio.Server, handlers: set[asyncio.Task[Any]]) -> None:
        self._server = server
        self._handlers = handlers

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=HANDLERS_TIMEOUT)


async def serve_control(
    path: str, reload: Reload, *, stop: Stop | None = None, status: Status | None = None
) -> ControlServer:
    """Listen on the unix socket at `path` (replacing a stale one) and run `reload`, `stop` or
    `status` on request (a command with no function is unknown)."""
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        task.add_done_callback(handlers.discard)

        def progress(message: str) -> None:
            if not writer.is_closing():
                writer.write(f"progress {message}\n".encode())

        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                command = (await reader.readline()).decode(errors="replace").strip()
            if command == "stop" and stop is not None:
                writer.write(b"ok stopping\n")
                await writer.drain()
                await stop()  # the connection stays open until every worker has drained
                return
            if command == "status" and status is not None:
                writer.write(f"ok {json.dumps(status())}\n".encode())
                await writer.drain()
                return
            if command not in (RELOAD, FRESH_RELOAD):
                writer.write(f"error unknown command {command[:40]!r}\n".encode())
                return
            try:
                summary = await reload(progress, command == FRESH_RELOAD)
            except ReloadFailed as error:
                writer.write(f"error {error}\n".encode())
            else:
                writer.write(f"ok {summary}\n".encode())
            await writer.drain()
        except ValueError:  # the line is longer than MAX_COMMAND
            writer.write(f"error command longer than {MAX_COMMAND} bytes\n".encode())
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, sock=_bind_private(path), limit=MAX_COMMAND)
    return ControlServer(server, handlers)


def _bind_private(path: str) -> socket.socket:
    """A unix socket bound at `path` with mode 0600 from its creation.

    A stale socket of ours (nobody listening) is replaced; anything else at `path`, a socket
    someone listens on or one owned by another user, stops `serve` with a `ServeError`.
    """
    clear_for_bind(path, f"control socket {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # created 0600: no moment where others may connect
    try:
        sock.bind(path)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot create the control socket {path}: {error.strerror}") from None
    finally:
        os.umask(previous)
    return sock


def request_reload(
    path: str, timeout: float, out: TextIO, *, fresh_fork_server: bool = False
) -> str:
    """Ask the supervisor listening at `path` for a rolling reload and wait for it to finish;
    with `fresh_fork_server`, its workers are forked by a fork server started for it.

    Progress lines are written to `out`. Returns the summary; raises `ReloadFailed` with the
    reason when the reload fails, and `OSError` (`ValueError` for a path too long for a unix
    socket) when the supervisor cannot be reached.
    """
    check_length(path)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        _require_same_user(client, path)
        client.sendall(f"{FRESH_RELOAD if fresh_fork_server else RELOAD}\n".encode())
        with client.makefile("r", encoding="utf-8", errors="replace") as lines:
            while (remaining := deadline - time.monotonic()) > 0:
                client.settimeout(remaining)
                line = lines.readline().rstrip("\n")
                kind, _, text = line.partition(" ")
                if kind == "progress":
                    print(text, file=out, flush=True)
                elif kind == "ok":
                    return text
                else:
                    raise ReloadFailed(text or "the supervisor closed the connection")
    raise TimeoutError(f"no answer within {timeout:g} s")


class CommandFailed(Exception):
    """The supervisor answered a command with an error (an older one may not know it)."""


def request_stop(path: str, timeout: float) -> int:
    """Ask the supervisor listening at `path` to stop, and wait until its process has exited.

    Returns its pid; raises `TimeoutError` when it still runs after `timeout` seconds,
    `CommandFailed` when it refuses, and `OSError` or `ValueError` as `request_reload`.
    """
    deadline = time.monotonic() + timeout
    pid, answer = _command(path, "stop", timeout, until_closed=True)
    if answer != "ok stopping":
        raise CommandFailed(answer.removeprefix("error ") or "the supervisor closed the connection")
    while time.monotonic() < deadline:
        if _exited(pid):
            return pid
        time.sleep(0.05)
    raise TimeoutError(f"supervisor {pid} still runs after {timeout:g} s")


def _exited(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie its parent has not reaped yet has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def request_status(path: str, timeout: float) -> dict[str, Any]:
    """The state of the supervisor listening at `path` (see `Supervisor.status`)."""
    _pid, answer = _command(path, "status", timeout)
    kind, _, text = answer.partition(" ")
    if kind != "ok":
        raise CommandFailed(text or "the supervisor closed the connection")
    status: dict[str, Any] = json.loads(text)
    return status


def _command(
    path: str, command: str, timeout: float, *, until_closed: bool = False
) -> tuple[int, str]:
    """Send `command` and read the one-line answer (then wait for the supervisor to close the
    connection, `until_closed`); the supervisor's pid and that line."""
    check_length(path)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        pid = _require_same_user(client, path)
        client.sendall(f"{command}\n".encode())
        with client.makefile("r", encoding="utf-8", errors="replace") as lines:
            answer = lines.readline().rstrip("\n")
            while until_closed and (remaining := deadline - time.monotonic()) > 0:
                client.settimeout(remaining)
                if not lines.readline():
                    break
            return pid, answer


def _require_same_user(client: socket.socket, path: str) -> int:
    """Refuse to trust a supervisor run by another user (a socket squatted at our path);
    its pid."""
    credentials = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", credentials)
    if uid != os.geteuid():
        raise PermissionError(f"{path} is served by uid {uid}, not by this user: refusing it")
    return int(pid)
