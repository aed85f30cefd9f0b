"""The worker's side: a task on the worker's own event loop that publishes
its presence record once per heartbeat, and at once when someone waits for
the revision it now serves (a write made with ``wait``: its message says so)
or when that revision came by a catch-up. A carried change nobody waits for
goes with the next heartbeat, so an ordinary change costs the presence store
nothing (docs/fleet.md, "What presence costs"). Running on the serving loop
is the point: a loop that is blocked (or a process that is paused) stops
heartbeating, and readers flag it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from ..redaction import describe_error
from .presence import PresenceABC
from .record import PresenceRecord

logger = logging.getLogger("quart_waffle.fleet")

LOOK_EVERY = 1.0
"""Seconds between two looks at the worker's state (in memory, no I/O): a
change of channel state or error is published within this."""
MIN_SPACING = 1.0
"""Seconds between two writes caused by a change of channel state or error,
so a flapping channel cannot flood the store."""
REMOVE_TIMEOUT = 1.0
"""Seconds a clean shutdown spends deleting its own record."""


class PresenceReporter:
    """Publishes ``make_record()`` through ``backend``.

    Arguments:
        backend: Where the record goes.
        make_record: This worker's record now (heartbeat: now); called on the loop.
        interval: Heartbeat seconds: the longest time between two writes.
    """

    def __init__(
        self, backend: PresenceABC, make_record: Callable[[], PresenceRecord], interval: float
    ) -> None:
        self.backend = backend
        self.interval = interval
        self._make_record = make_record
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published: PresenceRecord | None = None
        self._failing = False
        self._urgent = True  # the first record at once

    @property
    def published(self) -> PresenceRecord | None:
        """The last record stored."""
        return self._published

    def start(self) -> None:
        self._changed.set()  # the first record at once
        self._task = asyncio.create_task(self._run(), name="quart-waffle-presence")

    def changed(self, *, urgent: bool = True) -> None:
        """What this worker serves changed. ``urgent`` (someone waits for
        it): publish now; otherwise the new revision goes with the next
        heartbeat, at most one write per interval however many changes."""
        if urgent:
            self._urgent = True
            self._changed.set()

    async def stop(self) -> None:
        """Stop the task and delete this worker's record, so a clean shutdown
        leaves the view at once instead of going through ``gone``."""
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if self._published is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REMOVE_TIMEOUT):
                    await self.backend.remove(self._published.id)

    def _due(self, record: PresenceRecord, now: float, urgent: bool) -> bool:
        last = self._published
        if last is None or last.store != record.store or now - last.heartbeat >= self.interval:
            return True
        if urgent and last.revision != record.revision:
            return True
        state = (record.connected, record.last_error) != (last.connected, last.last_error)
        return state and now - last.heartbeat >= MIN_SPACING

    async def _run(self) -> None:
        retry_at = -math.inf
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(LOOK_EVERY, self.interval)):
                    await self._changed.wait()
            self._changed.clear()
            urgent, self._urgent = self._urgent, False
            record = self._make_record()
            if not self._due(record, record.heartbeat, urgent):
                continue
            if time.monotonic() < retry_at:
                self._urgent |= urgent
                continue
            try:
                await self.backend.publish(record)
            except Exception as error:
                self._urgent |= urgent
                if not self._failing:  # info: the store's outage has its own one warning
                    logger.info(
                        "could not publish this worker's presence (%s): %s; retrying",
                        self.backend.name,
                        describe_error(error),
                    )
                self._failing = True
                retry_at = time.monotonic() + min(5.0, self.interval)
                continue
            if self._failing:
                logger.info("presence published again (%s)", self.backend.name)
            self._failing = False
            self._published = record
