"""This process's place in the fleet: who it is, where presence is kept, the
reporter that heartbeats from its sync task while it serves, the fleet as it
reads it, and the wait for a revision to be applied everywhere."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import WaffleConfig
from ..redaction import describe_error
from ..sync import channel_options
from ..sync.runner import SyncHealth, SyncRunner
from .presence import PresenceABC, open_presence
from .record import (
    CLOCK_SKEW,
    Acknowledgement,
    Bounds,
    Fleet,
    PresenceRecord,
    WorkerView,
    bounds_for,
    judge,
)
from .reporter import PresenceReporter

logger = logging.getLogger("quart_waffle.fleet")

GENERATION = "QUART_WAFFLE_GENERATION"
"""The environment variable in which ``quart-waffle serve`` names a worker's
generation: the code version when ``WAFFLE_VERSION`` is not set."""
DEFAULT_WAIT = 10.0
"""Seconds ``wait=True`` waits."""
MAX_WAIT = 3600.0
"""The longest wait a write may ask for."""
MAX_API_WAIT = 60.0
"""The longest ``timeout`` a write through the admin API may wait for."""
FIRST_POLL, LAST_POLL = 0.005, 0.05
"""Seconds between two reads of the presence store while waiting: from the
first, growing by half each time, to the last."""


def default_host() -> str:
    """The host id when ``WAFFLE_HOST_ID`` is not set: the machine's name."""
    return socket.gethostname() or "localhost"


@dataclass(frozen=True)
class Identity:
    """What stays the same for a worker's whole life."""

    id: str
    host: str
    pid: int
    started_at: float
    version: str

    @classmethod
    def here(cls, host: str | None, version: str | None) -> Identity:
        host = host or default_host()
        pid = os.getpid()
        version = version or os.environ.get(GENERATION, "")
        return cls(f"{host}/{pid}/{secrets.token_hex(4)}", host, pid, time.time(), version)


class FleetMember:
    """One process of the fleet, reading presence and (once :meth:`start`\\ ed)
    reporting its own from the sync task.

    Arguments:
        backend: The presence store of the channel.
        identity: Host, pid, id, start time, code version.
        store: The identity of the settings database: only workers on it are
            this fleet (another deployment may share the channel).
        health: This worker's sync state now.
        bounds: How records are judged.
    """

    def __init__(
        self,
        backend: PresenceABC,
        identity: Identity,
        store: str,
        health: Callable[[], SyncHealth],
        bounds: Bounds,
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.store = store
        self.bounds = bounds
        self._health = health
        self._revision = -2
        self._applied_at = identity.started_at
        self.reporter = PresenceReporter(backend, self.record, health, bounds.heartbeat)
        self._reporting = False
        # id -> (a heartbeat ahead of our clock, when we first saw it): ages it by our clock
        self._ahead: dict[str, tuple[float, float]] = {}

    def record(self) -> PresenceRecord:
        """This worker's record now."""
        health = self._health()
        now = time.time()
        if health.applied_revision != self._revision:
            self._revision, self._applied_at = health.applied_revision, now
        me = self.identity
        return PresenceRecord(
            id=me.id,
            host=me.host,
            pid=me.pid,
            started_at=me.started_at,
            version=me.version,
            store=self.store,
            revision=health.applied_revision,
            applied_at=self._applied_at,
            channel=health.channel,
            connected=health.connected,
            last_sync=health.last_sync,
            last_error=health.last_error,
            heartbeat=now,
            interval=self.bounds.heartbeat,
        )

    def start(self, sync: SyncRunner) -> None:
        """Heartbeat from ``sync``'s task (a serving worker), before it starts."""
        sync.add_timer(self.reporter)
        self._reporting = True

    def changed(self, revision: int, *, urgent: bool = True) -> None:
        """This worker now serves ``revision`` (perhaps the one it served):
        with ``urgent`` (someone waits for it, or it came by a catch-up) the
        record is published now, else at the next heartbeat."""
        if revision != self._revision:
            self._revision, self._applied_at = revision, time.time()
        if self._reporting:
            self.reporter.changed(urgent=urgent)

    async def stop(self) -> None:
        """Stop heartbeating, delete our record, close the backend (after
        the sync task stopped: a write it was making would come back)."""
        try:
            if self._reporting:
                await self.reporter.remove()
        finally:
            self._reporting = False
            await self.backend.close()

    async def fleet(self, head: int | None = None, head_at: float | None = None) -> Fleet:
        """Every worker of this store, judged now (this worker as it is now,
        not as last published); ``head`` and ``head_at``: the store's newest
        revision and its commit time, if known. Raises when the presence
        store cannot be read."""
        now = time.time()
        records = [
            record
            for record in await self.backend.read(forget_after=self.bounds.forget_after, now=now)
            if record.store == self.store and record.id != self.identity.id
        ]
        if self._reporting:
            records.append(self.record())
        ahead = {
            record.id: (record.heartbeat, now)
            for record in records
            if record.heartbeat - now > CLOCK_SKEW
        }
        for id, (heartbeat, first) in self._ahead.items():
            if ahead.get(id, (None,))[0] == heartbeat:
                ahead[id] = (heartbeat, first)
        self._ahead = ahead
        seen = {id: first for id, (_, first) in ahead.items()}
        return judge(records, self.bounds, now, head, head_at, seen)

    async def wait(self, revision: int, within: float, since: float) -> Acknowledgement:
        """Wait until every worker live now serves ``revision`` or newer, or
        ``within`` seconds from ``since`` (``time.monotonic()`` at the
        commit). A worker that shuts down or goes meanwhile is no longer
        waited for. This worker's own record is stored saying ``revision``
        before the wait ends complete, so the fleet read next shows what was
        acknowledged. Never raises for the presence store: an unreadable (or
        unwritable) one ends the wait with ``error`` set."""
        poll = FIRST_POLL
        expected: set[str] | None = None
        latest: dict[str, WorkerView] = {}
        while True:
            try:
                fleet = await self.fleet(head=revision)
            except Exception as error:
                message = f"presence unreadable: {describe_error(error)}"
                if time.monotonic() - since >= within:
                    pending = tuple(latest.values())
                    count = len(expected or ())
                    return Acknowledgement(
                        revision,
                        count,
                        count - len(pending),
                        time.monotonic() - since,
                        pending,
                        message,
                    )
                await asyncio.sleep(poll)
                continue
            views = {view.record.id: view for view in fleet.live}
            if expected is None:
                expected = set(views)
            present = expected & set(views)
            latest = {id: views[id] for id in present if views[id].record.revision < revision}
            unstored = None if latest else await self._store_own(revision)
            elapsed = time.monotonic() - since
            if (not latest and unstored is None) or elapsed >= within:
                pending = tuple(sorted(latest.values(), key=_order))
                return Acknowledgement(
                    revision, len(present), len(present) - len(pending), elapsed, pending, unstored
                )
            await asyncio.sleep(min(poll, max(0.0, within - elapsed)))
            poll = min(poll * 1.5, LAST_POLL)

    async def _store_own(self, revision: int) -> str | None:
        """Store this worker's record (if it reports) unless it says
        ``revision`` already; why it could not, else None."""
        if not self._reporting:
            return None
        try:
            await self.reporter.store(revision)
        except Exception as error:
            return f"presence unwritable: {describe_error(error)}"
        return None


def _order(view: WorkerView) -> tuple[str, int]:
    return (view.record.host, view.record.pid)


def fleet_member(
    config: WaffleConfig, engine: AsyncEngine, store: str, health: Callable[[], SyncHealth]
) -> FleetMember:
    """This worker's member for ``config``: the backend that goes with its
    channel, its identity and its bounds. Opens nothing yet."""
    backend = open_presence(config.watchtype, channel_options(config), engine)
    interval = config.heartbeat_interval or backend.heartbeat
    identity = Identity.here(config.host_id, config.version)
    return FleetMember(
        backend, identity, store, health, bounds_for(interval, config.check_interval)
    )
