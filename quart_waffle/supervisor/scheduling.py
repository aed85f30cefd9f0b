"""Gentle starts: a new worker, or a fork server importing its modules, runs under the
``SCHED_IDLE`` scheduling policy, so that it takes only the CPU the serving workers leave idle,
until it is ready (or for `GENTLE_START` seconds at most: on a machine that is never idle it
must still start).

The kernel lets a process leave ``SCHED_IDLE`` only with ``CAP_SYS_NICE``, or with an
``RLIMIT_NICE`` that permits its nice value (sched(7)); without either, a process put there
would stay there for good. So nothing is put there unless it can come back (`gentle`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path

from . import procfs

GENTLE_START = 0.25
_CAP_SYS_NICE = 23  # its bit in the capability sets of /proc/<pid>/status
_MAX_NICE_LIMIT = 20  # RLIMIT_NICE permits nice values down to this minus the limit


@functools.cache
def gentle() -> bool:
    """Whether processes started from this one may be put under ``SCHED_IDLE`` and given the
    normal policy back: Linux, and ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that permits the
    nice value they inherit."""
    return hasattr(os, "SCHED_IDLE") and can_leave_idle()


def can_leave_idle() -> bool:
    """The kernel's rule for leaving ``SCHED_IDLE``, as it applies to this process."""
    try:
        import resource

        nice = os.getpriority(os.PRIO_PROCESS, 0)
        limit, _ = resource.getrlimit(resource.RLIMIT_NICE)
    except (AttributeError, ImportError, OSError):
        return False
    if limit == resource.RLIM_INFINITY or _MAX_NICE_LIMIT - nice <= limit:
        return True
    return _has_capability(_CAP_SYS_NICE)


def _has_capability(bit: int) -> bool:
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text()
        if found := re.search(r"^CapEff:\s*([0-9a-fA-F]+)$", status, re.MULTILINE):
            return bool(int(found.group(1), 16) >> bit & 1)
    return False


def start_gently(pid: int) -> None:
    """Put process `pid` under ``SCHED_IDLE``, if it can be given the normal policy back."""
    if gentle():
        set_policy(pid, "SCHED_IDLE")


def end_gentle_start(pid: int) -> None:
    """Give every thread of process `pid`, and the processes it has started, the normal
    policy again."""
    for process in (pid, *procfs.children(pid)):
        for thread in procfs.threads(process):
            set_policy(thread, "SCHED_OTHER")


def set_policy(pid: int, policy: str) -> None:
    """Set the scheduling policy of the process or thread `pid` (0: the calling thread),
    where the system has it."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(pid, getattr(os, policy), os.sched_param(0))
