"""The control socket: how `quart-waffle reload` asks a running supervisor for a reload.

The protocol is line based. The client sends ``reload``; the supervisor answers with any number
of ``progress <message>`` lines, then one ``ok <summary>`` or ``error <reason>`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from .errors import ReloadFailed

Progress = Callable[[str], None]
Reload = Callable[[Progress], Awaitable[str]]

COMMAND_TIMEOUT = 5.0


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
                writer.write(f"error unknown command {command!r}\n".encode())
                return
            try:
                summary = await reload(progress)
            except ReloadFailed as error:
                writer.write(f"error {error}\n".encode())
            else:
                writer.write(f"ok {summary}\n".encode())
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    server = await asyncio.start_unix_server(handle, path)
    os.chmod(path, 0o600)
    return server


def request_reload(path: str, timeout: float, out: TextIO) -> str:
    """Ask the supervisor listening at `path` for a rolling reload and wait for it to finish.

    Progress lines are written to `out`. Returns the summary; raises `ReloadFailed` with the
    reason when the reload fails, and `OSError` when the supervisor cannot be reached.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
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
