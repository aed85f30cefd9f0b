"""What Linux's ``/proc`` tells of a process: its threads, its children, its state and its
parent. A process that is gone, or a system without ``/proc``, tells nothing."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple


class Status(NamedTuple):
    """A process's state letter (``Z`` for exited but not reaped) and its parent's pid."""

    state: str
    parent: int


def threads(pid: int) -> list[int]:
    """The thread ids of process `pid` (its own pid alone where they cannot be listed)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def children(pid: int) -> set[int]:
    """The pids of the children of process `pid`, whichever of its threads started them."""
    found: set[int] = set()
    for thread in threads(pid):
        with contextlib.suppress(OSError, ValueError):
            found.update(map(int, Path(f"/proc/{pid}/task/{thread}/children").read_text().split()))
    return found


def status(pid: int) -> Status | None:
    """The state and parent of process `pid`; None once it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return Status(fields[0], int(fields[1]))
    except (OSError, IndexError, ValueError):
        return None
