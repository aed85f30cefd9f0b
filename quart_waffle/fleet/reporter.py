"""The worker's side: a timer of its sync task (so a worker runs one
background task) that publishes its presence record once per heartbeat, and
at once when someone waits for the revision it now serves (a write made with
``wait``: its message says so) or when that revision came by a catch-up. A
carried change nobody waits for goes with the next heartbeat, so an ordinary
change costs the presence store nothing (docs/fleet.md, "What presence
costs"). Running on the serving loop is the point: a loop that is blocked (or
a process that is paused) stops heartbeating, and readers flag it."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

from ..sync.runner import SyncHealth
from ..sync.timers import TimerABC
from .presence import PresenceABC
from .record import PresenceRecord

MIN_SPACING = 1.0
"""Seconds between two writes caused by a change of channel state or error,
so a flapping channel cannot flood the store."""
PUBLISH_TIMEOUT = 2.0
"""Seconds one write may hold the sync task (messages wait meanwhile): a
write that takes longer fails, and is retried."""
REMOVE_TIMEOUT = 1.0
"""Seconds a clean shutdown spends deleting its own record."""


class PresenceReporter(TimerABC):
    """Publishes ``make_record()`` through ``backend`` whenever the sync task
    finds it due (:meth:`SyncRunner.add_timer`). A write that fails, or takes
    longer than :data:`PUBLISH_TIMEOUT`, is retried ``min(5 s, interval)``
    later and logged at info: the store's outage has its own warning.

    Arguments:
        backend: Where the record goes.
        make_record: This worker's record now (heartbeat: now); called on the loop.
        health: This worker's sync state now (cheaper than a record: asked
            at each wake-up of the task).
        interval: Heartbeat seconds: the longest time between two writes.
    """

    quiet = True

    def __init__(
        self,
        backend: PresenceABC,
        make_record: Callable[[], PresenceRecord],
        health: Callable[[], SyncHealth],
        interval: float,
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.name = f"{backend.name} presence"
        self._make_record = make_record
        self._health = health
        self._published: PresenceRecord | None = None
        self._written = -math.inf  # loop time of the last write
        self._retry_at = -math.inf
        self._urgent = True  # the first record at once
        self._removed = False
        # one write at a time, each composing its record when it starts: a
        # record composed before a change never lands after one that says it
        self._writing = asyncio.Lock()

    @property
    def published(self) -> PresenceRecord | None:
        """The last record stored."""
        return self._published

    def changed(self, *, urgent: bool = True) -> None:
        """What this worker serves changed. ``urgent`` (someone waits for
        it): publish when the sync task next wakes, which is at once for a
        change it made itself (a message, a catch-up), and for this worker's
        own write when its message comes back; otherwise the new revision
        goes with the next heartbeat, at most one write per interval however
        many changes."""
        if urgent:
            self._urgent = True

    def due(self) -> float:
        last = self._published
        if self._removed:
            return math.inf
        if last is None:
            return self._retry_at
        state = self._health()
        at = self._written + self.interval
        if state.applied_revision == last.revision:
            self._urgent = False  # published already
        elif self._urgent:
            at = -math.inf
        if (state.connected, state.last_error) != (last.connected, last.last_error):
            at = min(at, self._written + MIN_SPACING)
        return max(at, self._retry_at)

    async def run(self) -> None:
        async with self._writing:
            await self._write()

    async def store(self, revision: int) -> None:
        """Publish now unless the stored record serves ``revision`` or newer
        (after any write under way), so the stored record says what a wait
        acknowledged; raise as :meth:`run`."""
        async with self._writing:
            stored = self._published
            if not self._removed and (stored is None or stored.revision < revision):
                await self._write()

    async def _write(self) -> None:
        record = self._make_record()
        loop = asyncio.get_running_loop()
        urgent, self._urgent = self._urgent, False  # a change meanwhile is urgent again
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self.backend.publish(record)
        except Exception:
            self._urgent |= urgent
            self._retry_at = loop.time() + min(5.0, self.interval)
            raise
        self._retry_at = -math.inf
        self._published, self._written = record, loop.time()

    async def remove(self) -> None:
        """Heartbeat no more and delete this worker's record, so a clean
        shutdown leaves the view at once instead of going through ``gone``."""
        self._removed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REMOVE_TIMEOUT), self._writing:
                if self._published is not None:
                    await self.backend.remove(self._published.id)
