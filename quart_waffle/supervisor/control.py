"""The control socket: how `quart-waffle reload` asks a running supervisor for a reload.

The protocol is line based. The client sends ``reload``; the supervisor answers with any number
of ``progress <message>`` lines, then one ``ok <summary>`` or ``error <reason>`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from .errors import ReloadFailed, ServeError
from .pool import Progress
from .unixsocket import check_length, clear_for_bind

Reload = Callable[[Progress], Awaitable[str]]

COMMAND_TIMEOUT = 5.0
MAX_COMMAND = 1024  # bytes of one command line; longer ones are refused


async def serve_control(path: str, reload: Reload) -> asyncio.Server:
    """Listen on the unix socket at `path` (replacing a stale one) and run `reload` on request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def progress(message: str) -> None:
            if not writer.is_closing():
                writer.write(f"progress {message}\n".encode())

        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                command = (await reader.readline()).decode(errors="replace").strip()
            if command != "reload":
                writer.write(f"error unknown command {command[:40]!r}\n".encode())
                return
            try:
                summary = await reload(progress)
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

    return await asyncio.start_unix_server(handle, sock=_bind_private(path), limit=MAX_COMMAND)


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


def request_reload(path: str, timeout: float, out: TextIO) -> str:
    """Ask the supervisor listening at `path` for a rolling reload and wait for it to finish.

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
        client.sendall(b"reload\n")
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


def _require_same_user(client: socket.socket, path: str) -> None:
    """Refuse to trust a supervisor run by another user (a socket squatted at our path)."""
    credentials = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    if uid != os.geteuid():
        raise PermissionError(f"{path} is served by uid {uid}, not by this user: refusing it")
