"""The one background task per worker: it keeps the worker's settings
current and runs its timers (the scheduled changes, its presence heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..errors import StoreUnavailableError
from ..redaction import describe_error
from .base import Channel
from .message import Carried, Hint, decode_hint, decode_message, encode_message
from .observer import SyncObserver
from .outage import Outage
from .pacing import Backoff, Pacing
from .timers import Periodic, Tick, TimerABC

logger = logging.getLogger("quart_waffle.sync")

CatchUp = Callable[[], Awaitable[int]]
"""Bring the worker up to the store's latest revision; return the revision applied."""
Apply = Callable[[Carried], Awaitable[bool]]
"""Apply a carried change if the worker serves its base and every value fits;
return whether it did (if not, the runner catches up from the store)."""
Load = Callable[[], Awaitable[object]]
"""The caller's first read of the store, between subscribing and the task."""

CATCH_UP_SPACING = 0.05
"""Seconds between two catch-ups while hints keep coming, once the burst is spent."""
CATCH_UP_BURST = 5
"""Catch-ups answered at once, one per hint, before the spacing applies."""
STORE_CHECK_EVERY = 12
"""Every this many periodic checks, one goes to the store whatever the
channel's witness says (a writer may not keep the witness: an older version,
or one whose message failed after its commit)."""
CANCEL_RETRY = 0.1
"""Seconds :meth:`SyncRunner.stop` waits for the task before cancelling it again."""
IGNORED_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about payloads that are not hints."""


@dataclass(frozen=True)
class SyncHealth:
    """What one worker knows about its own synchronisation.

    ``connected`` is the channel state; ``last_sync`` the wall-clock time of
    the last successful catch-up or check; ``last_error`` is None when the
    channel and the store are healthy; ``hinted_revision`` the revision
    in the last hint from another worker that the store confirmed (a change
    applied from its message, or a revision a catch-up found): a hint for a
    revision the store does not hold is never recorded.
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


class SyncRunner:
    """Runs, in one task, a channel's listen loop, the periodic safety-net
    check and the timers (:meth:`add_timer`): it waits for the next message
    or the next thing due, whichever comes first.

    The runner, and only it, reads what the channel delivers: it skips this
    worker's own messages (``sender`` is a random id per runner) and payloads
    that are not hints, applies carried changes that follow the revision
    served, and paces the catch-ups that other hints cause. Its parts (the
    sync, each timer) share one :class:`Outage`: logged once per outage.

    Arguments:
        channel: Where hints come from and go to.
        catch_up: Called when a hint is newer than ``applied()`` and its
            change was not applied directly, after every reconnection, and
            every ``check_interval`` seconds unless the channel's witness
            (:meth:`NotifierABC.head`) shows nothing newer.
        applied: The revision this worker serves now.
        check_interval: Seconds between safety-net checks; also the cap of the
            reconnection backoff, so an outage never delays a check further.
        apply: Applies a carried change; without it every hint means a catch-up.
        key: The message key (:func:`derive_key`): changes are sent and
            accepted only when signed with it; without it, bare hints only.
        store: The identity of this worker's database
            (:meth:`SettingsStore.identity`): changes are accepted only when
            committed to it; a change made to another database sharing the
            channel and the key is a bare hint.
        spacing, burst: Catch-ups caused by hints: ``burst`` at once, then one
            per ``spacing`` seconds however many hints come.
        observer: Told every sync event (the metrics); by default nobody.
        tick: The scheduled work: run at the task's start and at each
            periodic check, or sooner when it asked to (:data:`Tick`).
    """

    def __init__(
        self,
        channel: Channel,
        catch_up: CatchUp,
        applied: Callable[[], int],
        check_interval: float,
        *,
        apply: Apply | None = None,
        key: bytes | None = None,
        store: str = "",
        spacing: float = CATCH_UP_SPACING,
        burst: int = CATCH_UP_BURST,
        observer: SyncObserver | None = None,
        tick: Tick | None = None,
    ) -> None:
        self.channel = channel
        self.observer = observer or SyncObserver()
        self.sender = secrets.token_hex(8)
        self._catch_up = catch_up
        self._applied = applied
        self._apply = apply
        self._key = key
        self._store = store
        self._check_interval = check_interval
        self._pacing = Pacing(spacing, burst)
        self._backoff = Backoff(cap=min(5.0, check_interval))
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._reconnect_at = -math.inf
        self._last_sync: float | None = None
        self._outage = Outage(logger)
        self._part = f"{channel.name} sync"  # the channel and the catch-ups, in the outage
        self._hinted: int | None = None  # confirmed by the store
        self._unconfirmed: int | None = None  # hinted, newer than served: awaits a catch-up
        self._checks = 0  # periodic checks so far
        self._unannounced = -1  # the newest revision whose message failed
        self._ignored = 0  # payloads that were not hints, since the last warning
        self._ignored_warned = -math.inf
        self._timers: list[TimerABC] = []
        if tick is not None:
            self._timers.append(Periodic("scheduled work", tick, check_interval))

    def add_timer(self, timer: TimerABC) -> None:
        """Run ``timer`` from the task whenever it is due (before
        :meth:`start`: the task's waits do not see a timer added later)."""
        if self._task is not None:
            raise RuntimeError("SyncRunner.add_timer: add timers before start().")
        self._timers.append(timer)

    async def start(self, *, watch: bool, load: Load | None = None) -> None:
        """With ``watch``, subscribe, run ``load`` (the caller's first read
        of the store: subscribed first, nothing falls between), then start the
        background task; an unreachable channel is not fatal: the task keeps
        retrying while the worker serves. Without, subscribe to nothing and
        only run ``load``: :meth:`notify` still works."""
        if watch:
            await self._connect()
        if load is not None:
            await load()
        if watch:
            self._task = asyncio.create_task(self._run(), name="quart-waffle-sync")

    async def stop(self) -> None:
        """Cancel the task, wait for it, and close the channel. The task is
        cancelled again until it ends: the Redis client may swallow a
        cancellation that lands in its own timeout (redis-py issue 2551)."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_RETRY)
        await self.channel.close()
        self._connected = False
        self.observer.closed()

    async def notify(
        self, revision: int, changes: Mapping[str, str | None] | None = None, *, ack: bool = False
    ) -> None:
        """Tell the other workers that ``revision`` is committed, carrying
        ``changes`` (what it changed over ``revision - 1``: key to stored JSON
        text, None for the default) when the runner has a key and they fit the
        channel; ``ack``: the writer waits for every worker to acknowledge it,
        so receivers publish their presence at once. A failure is logged,
        never raised: the change is committed, this worker's task sends a bare
        hint again at its next periodic check, and the other workers' checks
        carry it meanwhile."""
        notifier = self.channel.notifier
        payload = encode_message(
            Hint(revision, self.sender),
            changes,
            key=self._key,
            store=self._store,
            max_payload=notifier.max_payload,
            ack=ack,
        )
        try:
            await notifier.send(payload)
        except Exception as error:
            self.observer.error("notify")
            self._unannounced = max(self._unannounced, revision)
            logger.warning(
                "could not notify revision %d on %s: %s",
                revision,
                self.channel.name,
                describe_error(error),
            )

    async def _announce_again(self) -> None:
        """Send a bare hint for the newest revision whose message failed, so
        the channel's witness leads the other workers to it."""
        revision, self._unannounced = self._unannounced, -1
        if revision >= 0:
            await self.notify(revision)

    def health(self) -> SyncHealth:
        """This worker's channel state, applied revision and last sync."""
        return SyncHealth(
            channel=self.channel.name,
            connected=self._connected,
            applied_revision=self._applied(),
            last_sync=self._last_sync,
            last_error=self._outage.error(self._part),
            hinted_revision=self._hinted,
        )

    async def _connect(self) -> None:
        try:
            await self.channel.listener.connect()
        except Exception as error:
            self._report(f"{self.channel.name} channel unreachable: {describe_error(error)}")
            await self._disconnect()
        else:
            self._connected = True
            self.observer.channel(True)

    async def _disconnect(self) -> None:
        self._connected = False
        self._reconnect_at = asyncio.get_running_loop().time() + self._backoff.next_delay()
        self.observer.channel(False)
        with contextlib.suppress(Exception):
            await self.channel.listener.close()

    def _report(self, message: str, kind: str = "channel", *, store: bool = False) -> None:
        """Count every failure; the outage logs once, not once per retry."""
        self.observer.error(kind)
        self._outage.begin(self._part, message, store=store)

    async def _witness_agrees(self) -> bool:
        """Whether a periodic check may skip the store: the channel keeps the
        hint of its last message (the Redis key ``<channel>:head``, the watcher
        file) and it is no newer than the revision served. A channel that
        keeps none (``postgres``, ``none``), or cannot be read, means the
        store; so does every :data:`STORE_CHECK_EVERY`-th check."""
        self._checks += 1
        if self._checks % STORE_CHECK_EVERY == 0:
            return False
        try:
            head = await self.channel.notifier.head()
        except Exception:
            return False
        if head == b"":
            return True  # nothing announced on this channel yet
        hint = None if head is None else decode_hint(head)
        if hint is not None:
            self.observer.heard(hint.revision)
        return hint is not None and hint.revision <= self._applied()

    async def _receive(self, payloads: list[bytes]) -> bool:
        """Apply what ``payloads`` carry; return whether they still owe this
        worker a catch-up.

        Its own messages never do. A carried change that follows the
        revision served is applied in revision order, with no database
        round trip. Any other message from another worker owes a catch-up
        when newer than the revision served (a revision is committed before
        it is announced, so an older one is already here), as does a carried
        change that could not be applied. A payload that is not a hint is
        ignored, but it may have displaced one (a rewritten watcher file), so
        it owes a catch-up too; catch-ups are paced either way.
        """
        owed = False
        hinted = -1
        carried: list[Carried] = []
        for payload in payloads:
            message = decode_message(payload, self._key, self._store)
            if message is None:
                self._ignore(payload)
                owed = True
            elif message.sender != self.sender:
                if isinstance(message, Carried) and self._apply is not None:
                    carried.append(message)
                else:
                    hinted = max(hinted, message.revision)
                    self._heard(message.revision)
        for change in sorted(carried, key=lambda change: change.revision):
            if change.revision > self._applied() and not await self._apply_carried(change):
                hinted = max(hinted, change.revision)
            self._heard(change.revision)
        return owed or hinted > self._applied()

    def _heard(self, revision: int) -> None:
        """Record a hinted revision once the store confirms it: at once when
        this worker serves it already, else after the next catch-up
        (:meth:`_confirm`), so a forged hint is never shown in health."""
        self.observer.heard(revision)
        if revision <= self._applied():
            self._hinted = revision
        else:
            self._unconfirmed = revision

    def _confirm(self) -> None:
        """After a catch-up: the hint awaiting it is recorded if the store
        held its revision, dropped if not (it named a revision never made)."""
        if self._unconfirmed is not None and self._unconfirmed <= self._applied():
            self._hinted = self._unconfirmed
        self._unconfirmed = None

    async def _apply_carried(self, change: Carried) -> bool:
        if self._apply is None or change.base != self._applied():
            return False
        try:
            applied = await self._apply(change)
        except Exception as error:
            self.observer.error("apply")
            logger.warning(
                "could not apply revision %d from the %s channel, catching up from the store: %s",
                change.revision,
                self.channel.name,
                describe_error(error),
            )
            return False
        if applied:
            self.observer.applied_directly(change)
        return applied

    def _ignore(self, payload: bytes) -> None:
        """Count a payload that is not a hint; warn at most once a minute."""
        self._ignored += 1
        now = time.monotonic()
        if now - self._ignored_warned >= IGNORED_WARNING_INTERVAL:
            logger.warning(
                "ignored %d message(s) on the %s channel that are not hints, the last"
                " %d bytes starting %r",
                self._ignored,
                self.channel.name,
                len(payload),
                payload[:24],
            )
            self._ignored, self._ignored_warned = 0, now

    async def _run_timers(self, now: float) -> float:
        """Run each timer due at ``now`` (a failure is the timer's outage);
        return when the next one is due."""
        next_due = math.inf
        for timer in self._timers:
            due = timer.due()
            if due <= now:
                try:
                    await timer.run()
                except Exception as error:
                    down = isinstance(error, StoreUnavailableError)
                    self._outage.begin(
                        timer.name, describe_error(error), store=down, quiet=timer.quiet
                    )
                else:
                    self._outage.end(timer.name)
                due = timer.due()
            next_due = min(next_due, due)
        return next_due

    async def _wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for messages and take them in (:meth:`_receive`);
        return whether they owe a catch-up."""
        if not self._connected:
            await asyncio.sleep(seconds)
            return False
        try:
            payloads = await self.channel.listener.wait(seconds)
        except Exception as error:
            self._report(f"{self.channel.name} channel lost: {describe_error(error)}")
            await self._disconnect()
            return False
        return await self._receive(payloads)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_interval
        retry_at = -math.inf  # of a catch-up that failed
        owed = False  # a catch-up is owed: a newer hint, a reconnection, a failure
        while True:
            timers_due = await self._run_timers(loop.time())
            now = loop.time()
            if not self._connected and now >= self._reconnect_at:
                await self._connect()
                owed = True  # a hint may have been missed meanwhile
                continue
            sync_at = next_check
            if owed and self._connected:  # else the store is read at the periodic check
                sync_at = min(sync_at, self._pacing.ready_at(now))
            sync_at = max(sync_at, retry_at)
            if now < sync_at:
                wake = min(sync_at, timers_due)
                if not self._connected:
                    wake = min(wake, self._reconnect_at)
                wait = wake - now
                if wait > 0:
                    owed = await self._wait(wait) or owed
                continue
            if self._connected:
                await self._announce_again()
            if not owed and await self._witness_agrees():
                next_check = loop.time() + self._check_interval
                self._last_sync = time.time()
                continue
            self._pacing.record(loop.time())
            try:
                await self._catch_up()
            except Exception as error:
                store = isinstance(error, StoreUnavailableError)
                self._report(f"catch-up failed: {describe_error(error)}", "catch_up", store=store)
                retry_at, owed = loop.time() + self._backoff.next_delay(), True
                continue
            retry_at, owed = -math.inf, False
            self._confirm()
            self.observer.caught_up()
            next_check = loop.time() + self._check_interval
            self._last_sync = time.time()
            if self._connected:
                self._outage.end(self._part)
                self._backoff.reset()
