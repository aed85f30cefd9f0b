"""`--reload`, for development: watch the code and roll the workers when a file changes.

Uses watchfiles (the ``reload`` extra), whose `awatch` runs in the supervisor's event loop.
A change asks the pool for a rolling reload as `quart-waffle reload` does, so changes made
while a reload runs are merged into the next one and no request is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("quart_waffle.supervisor")

DEFAULT_INCLUDES = ("*.py",)
# A burst of changes (each within STEP_MS of the last, DEBOUNCE_MS at most) makes one reload.
STEP_MS = 300
DEBOUNCE_MS = 1600
MISSING = "reload needs watchfiles, the reload extra: pip install 'quart-waffle[reload]'"

RequestReload = Callable[[], "asyncio.Future[str]"]


def check_available() -> None:
    """Raise `ValueError` saying what to install when watchfiles is missing."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ValueError(MISSING) from None


class CodeFilter:
    """Which changed files count: those whose name matches an include pattern (``*.py`` by
    default) and no exclude pattern, outside the directories watchfiles ignores (``.git``,
    ``__pycache__``, ``.venv``, ``node_modules``, ...). A pattern is matched against the file
    name and against the whole path.

    Example::

        CodeFilter(["*.py", "*.html"], ["*_test.py"])(None, "/srv/app/templates/a.html")  # True
    """

    def __init__(self, includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        from watchfiles import DefaultFilter

        self.includes = tuple(includes) or DEFAULT_INCLUDES
        self.excludes = tuple(excludes)
        self._ignore_dirs = frozenset(DefaultFilter.ignore_dirs)

    def __call__(self, change: Any, path: str) -> bool:
        """Whether a change to `path` counts (watchfiles' filter signature)."""
        if any(part in self._ignore_dirs for part in path.split(os.sep)):
            return False
        return self._matches(path, self.includes) and not self._matches(path, self.excludes)

    @staticmethod
    def _matches(path: str, patterns: Sequence[str]) -> bool:
        name = os.path.basename(path)
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


class CodeWatcher:
    """Watches `directories` and calls `request_reload` once per burst of changes.

    Arguments:
        directories: Watched recursively (the working directory when empty).
        request_reload: Asks for a rolling reload (`Pool.request_reload`).
        includes: File name patterns watched (``*.py`` when empty).
        excludes: File name patterns ignored.

    Example::

        watcher = CodeWatcher(["."], pool.request_reload)
        watcher.start()
        ...  # serve
        await watcher.stop()
    """

    def __init__(
        self,
        directories: Sequence[str],
        request_reload: RequestReload,
        *,
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
    ) -> None:
        self.directories = [os.path.abspath(d) for d in directories or [os.getcwd()]]
        self.filter = CodeFilter(includes, excludes)
        self._request_reload = request_reload
        self._stop = asyncio.Event()  # watchfiles' thread checks it between steps
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching, in a task of the running loop."""
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log the changes
        self._task = asyncio.create_task(self._watch())
        log.info(
            "Reloading on changes to %s in %s",
            ", ".join(self.filter.includes),
            ", ".join(self.directories),
        )

    async def stop(self) -> None:
        """Stop watching and wait until watchfiles has let go."""
        self._stop.set()
        if self._task is not None:
            # watchfiles returns within a step of the stop event; the cancel is the fallback
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 1.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def stopped(self) -> None:
        """Wait until cancelled, then stop watching: a task to cancel when the server stops."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.stop()

    async def _watch(self) -> None:
        try:
            await self._watch_changes()
        except Exception:
            # the pool serves on; only the reloads on change stop
            log.exception("Stopped watching the code: reload with SIGHUP or quart-waffle reload")

    async def _watch_changes(self) -> None:
        from watchfiles import awatch

        async for changes in awatch(
            *self.directories,
            watch_filter=self.filter,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=self._stop,
        ):
            paths = sorted({path for _, path in changes})
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            log.info("Code changed (%s): rolling reload", shown)
            self._request_reload().add_done_callback(lambda result: result.exception())
