"""Work the sync task does between messages when it falls due (the scheduled
changes, this worker's presence heartbeat): the task waits for the next
message or the next timer, whichever comes first, so a worker runs one task."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

Tick = Callable[[], Awaitable[float | None]]
"""Periodic work beside the sync (due scheduled changes): returns the seconds
until it is next due (None: the next periodic check)."""


class TimerABC(ABC):
    """Work the sync task runs when due.

    ``name`` is its part in the task's log; a failure is logged once per
    outage (``quiet``: at info, for a part whose outage the others report).
    """

    name: str = ""
    quiet: bool = False

    @abstractmethod
    def due(self) -> float:
        """The loop time it is next due at (-inf: at once, inf: never).
        Asked at each wake-up of the task: no I/O."""

    @abstractmethod
    async def run(self) -> None:
        """Do the work and set when it is next due, counted from its end (so
        messages are read in between), also when it fails (then raise).
        Messages wait meanwhile: keep it short."""


class Periodic(TimerABC):
    """A :data:`Tick` as a timer: due at once, then when it asks, and one
    ``interval`` after it ended at the latest (also after a failure)."""

    def __init__(self, name: str, tick: Tick, interval: float) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval
        self._due = -float("inf")

    def due(self) -> float:
        return self._due

    async def run(self) -> None:
        delay = None
        try:
            delay = await self._tick()
        finally:
            wait = self._interval if delay is None else max(0.0, min(delay, self._interval))
            self._due = asyncio.get_running_loop().time() + wait
