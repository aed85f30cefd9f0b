"""The one background task per worker that keeps its settings current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .base import SyncChannelABC

logger = logging.getLogger("quart_waffle.sync")

CatchUp = Callable[[], Awaitable[int]]
"""Bring the worker up to the store's latest revision; return the revision applied."""

_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]*@")


def describe(error: BaseException) -> str:
    """``"<type>: <first line>"``, short, with any ``user:password@`` masked:
    driver messages can carry SQL and its parameters on later lines, and a
    connection URL anywhere. For health and logs."""
    lines = str(error).strip().splitlines()
    line = _CREDENTIALS.sub(r"\1:***@", lines[0]) if lines else ""
    if len(line) > 160:
        line = f"{line[:157]}..."
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


@dataclass(frozen=True)
class SyncHealth:
    """What one worker knows about its own synchronisation.

    ``connected`` is the channel state; ``last_sync`` the wall-clock time of
    the last successful catch-up or check; ``last_error`` is None when the
    channel and the store are healthy; ``hinted_revision`` the revision
    in the last hint from another worker.
    """

    channel: str
    connected: bool
    applied_revision: int
    last_sync: float | None
    last_error: str | None
    hinted_revision: int | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, for the admin endpoint and for operators."""
        return {
            "channel": self.channel,
            "connected": self.connected,
            "applied_revision": self.applied_revision,
            "hinted_revision": self.hinted_revision,
            "last_sync": self.last_sync,
            "last_error": self.last_error,
        }


class Backoff:
    """Bounded exponential delays with jitter: 0.1 s doubling up to ``cap``."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class SyncRunner:
    """Runs a channel's listen loop and the periodic safety-net check.

    Arguments:
        channel: Where hints come from and go to.
        catch_up: Called when a hint is newer than ``applied()``, after every
            reconnection, and every ``check_interval`` seconds in any case.
        applied: The revision this worker serves now.
        check_interval: Seconds between safety-net checks; also the cap of the
            reconnection backoff, so an outage never delays a check further.
    """

    def __init__(
        self,
        channel: SyncChannelABC,
        catch_up: CatchUp,
        applied: Callable[[], int],
        check_interval: float,
    ) -> None:
        self.channel = channel
        self._catch_up = catch_up
        self._applied = applied
        self._check_interval = check_interval
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._last_sync: float | None = None
        self._last_error: str | None = None
        self._hinted: int | None = None

    async def start(self, *, watch: bool) -> None:
        """Subscribe (before the caller loads, so nothing falls between) and,
        with ``watch``, start the background task. An unreachable channel is
        not fatal: the task keeps retrying while the worker serves."""
        await self._connect()
        if watch:
            self._task = asyncio.create_task(self._run(), name="quart-waffle-sync")

    async def stop(self) -> None:
        """Cancel the task, wait for it, and close the channel."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.channel.close()
        self._connected = False

    async def notify(self, revision: int) -> None:
        """Tell the other workers; a failure is logged, never raised: the
        change is committed and the periodic check will carry it."""
        try:
            await self.channel.notify(revision)
        except Exception as error:
            logger.warning(
                "could not notify revision %d on %s: %s",
                revision,
                self.channel.name,
                describe(error),
            )

    def health(self) -> SyncHealth:
        """This worker's channel state, applied revision and last sync."""
        return SyncHealth(
            channel=self.channel.name,
            connected=self._connected,
            applied_revision=self._applied(),
            last_sync=self._last_sync,
            last_error=self._last_error,
            hinted_revision=self._hinted,
        )

    async def _connect(self) -> None:
        try:
            await self.channel.connect()
        except Exception as error:
            self._report(f"{self.channel.name} channel unreachable: {describe(error)}")
            self._connected = False
            with contextlib.suppress(Exception):
                await self.channel.close()
        else:
            self._connected = True

    def _report(self, message: str) -> None:
        """Log once per outage, not once per retry."""
        if self._last_error is None:
            logger.warning("%s; serving the last known values and retrying", message)
        self._last_error = message

    async def _run(self) -> None:
        backoff = Backoff(cap=min(5.0, self._check_interval))
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_interval
        pending = False  # a catch-up is owed: a newer hint, a reconnection, a failure
        while True:
            if not self._connected:
                await asyncio.sleep(backoff.next_delay())
                await self._connect()
                pending = True  # a hint may have been missed meanwhile
                # unreachable: the store may still be, so the periodic check goes on
                if not self._connected and loop.time() < next_check:
                    continue
            elif not pending:
                try:
                    hinted = await self.channel.wait(max(0.0, next_check - loop.time()))
                except Exception as error:
                    self._report(f"{self.channel.name} channel lost: {describe(error)}")
                    self._connected = False
                    with contextlib.suppress(Exception):
                        await self.channel.close()
                    continue
                if hinted is not None:
                    # any hint from another worker earns a catch-up, even one not newer
                    # than what is served: its number may be stale (a watcher file left
                    # by an earlier database) or overtaken (two notifiers racing), and
                    # one indexed query settles it; bursts still coalesce in wait()
                    self._hinted = hinted
                    pending = True
                if not pending and loop.time() < next_check:
                    continue
            try:
                await self._catch_up()
            except Exception as error:
                self._report(f"catch-up failed: {describe(error)}")
                await asyncio.sleep(backoff.next_delay())
                continue
            pending = False
            next_check = loop.time() + self._check_interval
            self._last_sync = time.time()
            if self._connected:
                if self._last_error is not None:
                    logger.warning("%s sync recovered", self.channel.name)
                self._last_error = None
                backoff.reset()
