"""Reaching every worker of a multi-process server.

Workers accept from one shared socket, so the kernel decides which one gets a connection:
keep opening connections, holding the ones already made, until each worker holds one. An
app that reports its pid (``GET /whoami``) says who answered; for any other app,
:func:`server_pid` finds the process holding the server end of the connection in /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from harness.http import Connection, HttpError, close_all


def _socket_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server end of the loopback connection ``client_port`` → ``server_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if (
                    int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                    and inode
                ):
                    return inode
    return None


def server_pid(group: int, server_port: int, connection: Connection) -> int | None:
    """The pid, among process group ``group``, that holds the server end of ``connection``
    (an answered connection, so that a worker has accepted it), or None."""
    inode = _socket_inode(server_port, connection.local_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) != group:
                continue
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return int(entry.name)
    return None


async def every_worker(
    group: int, port: int, workers: int, path: str = "/", within: float = 30.0
) -> dict[int, bytes]:
    """``GET path`` answered by each of ``workers`` workers of the server whose process
    group is ``group``: {worker pid: body}. A non-200 answer raises HttpError; a refused or
    unanswered connection is tried again until ``within`` seconds have passed."""
    answers: dict[int, bytes] = {}
    held: list[Connection] = []
    deadline = time.monotonic() + within
    try:
        while len(answers) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only workers {sorted(answers)} of {workers} answered")
            try:
                connection = await Connection.open(port)
                held.append(connection)
                status, body = await connection.request("GET", path)
            except (OSError, TimeoutError):  # not accepting yet, or still starting
                await asyncio.sleep(0.1)
                continue
            if status != 200:
                raise HttpError(f"GET {path}: {status} {body[:200]!r}")
            pid = server_pid(group, port, connection)
            if pid is not None:
                answers.setdefault(pid, body)
    finally:
        await close_all(held)
    return answers


async def connect_per_worker(
    port: int, workers: int, within: float = 30.0, path: str = "/whoami"
) -> dict[int, Connection]:
    """One keep-alive connection per distinct worker pid, as ``GET path`` reports it in the
    ``"pid"`` field of its JSON (held connections do not stop a worker from accepting more,
    so this converges quickly)."""
    found: dict[int, Connection] = {}
    spare: list[Connection] = []
    deadline = time.monotonic() + within
    try:
        while len(found) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(found)} of {workers} workers answered in {within} s")
            batch = await asyncio.gather(*(Connection.open(port) for _ in range(workers)))
            answers = await asyncio.gather(*(c.get_json(path) for c in batch))
            for connection, answer in zip(batch, answers, strict=True):
                pid = int(answer["pid"])
                if pid in found:
                    spare.append(connection)
                else:
                    found[pid] = connection
    except BaseException:
        await close_all(list(found.values()))
        raise
    finally:
        await close_all(spare)
    return found
