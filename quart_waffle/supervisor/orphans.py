"""Reaping the processes the supervisor adopts (as a child subreaper) and nothing waits for:
say, the middle process of a fork that a killed fork server left, or a worker it forked that
nobody was told of. Left alone, each would stay a zombie until the supervisor exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path

log = logging.getLogger("quart_waffle.supervisor")

REAP_INTERVAL = 2.0


def exited_children() -> set[int]:
    """The pids of this process's children that have exited and are not reaped yet (Linux)."""
    children: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            children.update(int(pid) for pid in (task / "children").read_text().split())
    exited: set[int] = set()
    for pid in children:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                exited.add(pid)
    return exited


async def reap_orphans(waited: Callable[[], Collection[int]]) -> None:
    """Every `REAP_INTERVAL` seconds, reap the exited children that no one else waits for.

    `waited` gives the pids waited for here other than through asyncio's child watcher. A
    child is reaped once it has been seen exited twice in a row: asyncio's watcher and
    `waited`'s owner reap their own at once, and must get their exit status themselves.
    """
    seen: set[int] = set()
    while True:
        await asyncio.sleep(REAP_INTERVAL)
        exited = exited_children().difference(waited())
        for pid in exited & seen:
            _reap(pid)
        seen = exited - seen


def _reap(pid: int) -> None:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped by its owner after all
        return
    if reaped:
        log.info(
            "Reaped process %d (exit code %d): adopted, and waited for by nothing else",
            pid,
            os.waitstatus_to_exitcode(status),
        )
