"""Whether what a fork server loaded is still what is on disk, so that a later generation may
be forked from it: every file its modules were loaded from (a zip archive for a module loaded
from one), every directory on its import path but the working directory (an install or an
uninstall, a new ``.pth`` file or a module that would now shadow another changes one), and
the interpreter itself.

A file's stamp is its device, inode, status change time and size: any write, replacement or
removal changes one of them, and a status change time cannot be set back. A file changed
while the fork server was loading it may have been read in either state, so one whose change
time is not older than the fork server's start, or one that cannot be read at all, counts as
changed: such a fork server is never reused.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

Stamp = tuple[int, int, int, int] | None
"""A file's device, inode, status change time and size; None when it cannot tell."""


class LoadedCode:
    """The stamps of what this process has loaded so far.

    Arguments:
        stamps: Each path and its stamp.
    """

    def __init__(self, stamps: dict[str, Stamp]) -> None:
        self.stamps = stamps

    @classmethod
    def record(cls, started_ns: int) -> LoadedCode:
        """Stamp what this process has loaded; `started_ns` (`time.time_ns()`) is when it
        started, a little early rather than late."""
        stamps: dict[str, Stamp] = {}
        for path in _loaded_paths():
            stamp = _stamp(path)
            stamps[path] = None if stamp is None or stamp[2] >= started_ns else stamp
        return cls(stamps)

    def first_changed(self) -> str | None:
        """The first path changed or removed since it was stamped, or that could not be
        stamped; None if there is none."""
        return next(
            (path for path, stamp in self.stamps.items() if stamp is None or _stamp(path) != stamp),
            None,
        )


def _loaded_paths() -> Iterator[str]:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            archive = getattr(getattr(module, "__loader__", None), "archive", None)
            yield archive if isinstance(archive, str) else path
    here = {"", ".", os.getcwd()}
    yield from (entry for entry in sys.path if entry not in here and os.path.isdir(entry))
    yield os.path.realpath(sys.executable)


def _stamp(path: str) -> Stamp:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_ctime_ns, status.st_size
