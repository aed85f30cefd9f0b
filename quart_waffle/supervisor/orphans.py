"""Reaping the processes the supervisor adopts (as a child subreaper) and nothing waits for:
say, the middle process of a fork that a killed fork server left, or a worker it forked that
nobody was told of. Left alone, each would stay a zombie until the supervisor exits."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection

from . import procfs

log = logging.getLogger("quart_waffle.supervisor")

REAP_INTERVAL = 2.0


def exited_children() -> set[int]:
    """The pids of this process's children that have exited and are not reaped yet (Linux)."""
    return {
        pid
        for pid in procfs.children(os.getpid())
        if (status := procfs.status(pid)) is not None and status.state == "Z"
    }


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
