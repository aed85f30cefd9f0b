"""The ``QuartWaffle`` extension: wires declarations, store and sync into the
Quart lifecycle and holds this worker's snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from quart import Quart, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from .actor import checked_actor, checked_reason
from .config import OPTIONS, WaffleConfig, Watchtype
from .errors import DeclarationError, InvalidValueError, StoreUnavailableError, UnknownSettingError
from .fleet import Acknowledgement, Fleet, FleetMember
from .fleet.member import DEFAULT_WAIT, MAX_WAIT, fleet_member
from .metrics import sync_observer
from .redaction import describe_error
from .settings import Setting, declare, display_value
from .signals import settings_changed
from .snapshot import Snapshot
from .store import (
    HistoryEntry,
    SettingsStore,
    StoredValue,
    WriteGuard,
    create_engine,
    unavailable_as_error,
)
from .sync import Carried, SyncHealth, SyncRunner, derive_key, make_channel

if TYPE_CHECKING:
    from .admin.permissions import KeyAuthorizer
    from .schedule import ScheduledChange
    from .testing import Override

T = TypeVar("T")
Authorizer = Callable[[Request], Awaitable[bool]]
"""Decides whether a request may use the admin; see :doc:`admin`."""

logger = logging.getLogger("quart_waffle")
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
"""The format of quart-waffle's log lines when the app configures no logging."""


@dataclass(frozen=True)
class _Connection:
    """What a started extension holds; it exists from start to stop."""

    app: Quart
    config: WaffleConfig
    store: SettingsStore
    identity: str  # of the store's database: sync messages name it
    sync: SyncRunner
    refresh_lock: asyncio.Lock  # bound to the loop that serves
    announce: bool  # send settings_changed: only while serving
    owns_engine: bool
    fleet: FleetMember  # presence: heartbeats from the sync task, reads the fleet

    async def close(self) -> None:
        try:
            await self.sync.stop()  # first: its task writes no presence record after
        finally:
            await self.fleet.stop()  # a clean shutdown leaves the fleet view at once
        if self.owns_engine:
            await self.store.engine.dispose()


class QuartWaffle:
    """Runtime-editable settings for a Quart app, kept in step across workers.

    Arguments:
        app: The app, or None to call :meth:`init_app` later.
        settings: :class:`Setting` declarations, besides ``WAFFLE_CONFS``.
        engine: An ``AsyncEngine`` of your own; it is not disposed by us.
        authorize: An async callback deciding who may use the admin.
        authorize_keys: An async callback deciding which keys an admin
            request may read or change; see :doc:`admin` ("Who may change what").
        confs, database_url, ...: The ``WAFFLE_*`` options (see the
            configuration reference); None takes the option from
            ``app.config``, then the environment, then the default.

    Example::

        app = Quart(__name__)
        app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello", "desc": "Home page"}}
        waffle = QuartWaffle(app)

        @app.get("/")
        async def index():
            return current_app.config["GREETING"]
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        settings: Iterable[Setting[Any]] = (),
        engine: AsyncEngine | None = None,
        authorize: Authorizer | None = None,
        authorize_keys: KeyAuthorizer | None = None,
        confs: Mapping[str, Mapping[str, Any]] | None = None,
        database_url: str | None = None,
        create_tables: bool | None = None,
        multiproc: bool | None = None,
        watchtype: Watchtype | None = None,
        watcher_file: str | None = None,
        watch_interval: float | None = None,
        check_interval: float | None = None,
        redis_url: str | None = None,
        redis_host: str | None = None,
        redis_port: int | None = None,
        redis_channel: str | None = None,
        sync_key: str | None = None,
        mirror_config: bool | None = None,
        admin_prefix: str | None = None,
        admin_token: str | None = None,
        admin_tokens: Mapping[str, Any] | str | None = None,
        host_id: str | None = None,
        version: str | None = None,
        heartbeat_interval: float | None = None,
        metrics_token: str | None = None,
        metrics_public: bool | None = None,
    ) -> None:
        self._settings = list(settings)
        self._engine = engine
        self.authorize = authorize
        self.authorize_keys = authorize_keys
        arguments = locals()  # the options, named as in the option table
        self._arguments = {option.name: arguments[option.name] for option in OPTIONS}
        self.app: Quart | None = None
        self._config: WaffleConfig | None = None
        self.declarations: dict[str, Setting[Any]] = {}
        self._snapshot = Snapshot.of(-1, {}, {})
        self._overrides: list[dict[str, Any]] = []  # see quart_waffle.testing
        self._connection: _Connection | None = None
        # restart-required key: the value this process started with (see pending_restart)
        self._started_with: dict[str, Any] = {}
        self.restart_requested = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Register on ``app``: options resolved, declarations checked,
        defaults mirrored into ``app.config``; nothing is opened until the app
        starts serving. Raises :class:`ConfigurationError` for a bad option and
        :class:`DeclarationError` for a bad declaration."""
        if "waffle" in app.extensions:
            raise RuntimeError(
                "A QuartWaffle extension is already registered on this app. Create one"
                " QuartWaffle per app and call init_app once."
            )
        if self.app is not None:
            raise RuntimeError(
                "This QuartWaffle is already bound to another app: create one QuartWaffle per app."
            )
        config = WaffleConfig.resolve(app, self._arguments)
        declarations = declare(config.confs, self._settings)
        _refuse_shadowing(app, declarations, mirror_config=config.mirror_config)
        self._config = config
        self.declarations = declarations
        self._snapshot = self._defaults()
        self.app = app
        if config.mirror_config:
            app.config.update(self._snapshot.values)
        app.extensions["waffle"] = self
        app.before_serving(self._before_serving)
        app.after_serving(self._after_serving)
        from .cli import waffle_cli

        app.cli.add_command(waffle_cli)
        if config.admin_prefix is not None:
            from .admin import register_admin

            register_admin(app, self)

    @property
    def config(self) -> WaffleConfig:
        """The resolved options; :class:`RuntimeError` before :meth:`init_app`."""
        return self._registration()[1]

    # Reading: a dict lookup, no I/O.

    @property
    def snapshot(self) -> Snapshot:
        """Every value this worker serves, at :attr:`revision` (with the
        values of any active :meth:`override` laid over them)."""
        if self._overrides:
            return self._snapshot.merged(self._snapshot.revision, self._overridden(), {})
        return self._snapshot

    @property
    def revision(self) -> int:
        """The revision this worker serves (-1 before it has loaded)."""
        return self._snapshot.revision

    @overload
    def get(self, key: Setting[T]) -> T: ...
    @overload
    def get(self, key: str) -> Any: ...
    def get(self, key: Setting[Any] | str) -> Any:
        """The current value of a setting, typed when given its :class:`Setting`.

        Example: ``waffle.get(MAX_ITEMS)`` or ``waffle.get("MAX_ITEMS")``.
        """
        name = key if isinstance(key, str) else key.key
        try:
            if self._overrides:
                return self.snapshot.values[name]
            return self._snapshot.values[name]
        except KeyError:
            raise UnknownSettingError(name) from None

    def setting(self, key: str) -> Setting[Any]:
        """The declaration of ``key``."""
        try:
            return self.declarations[key]
        except KeyError:
            raise UnknownSettingError(key) from None

    def is_default(self, key: str) -> bool:
        """Whether ``key`` serves its declared default: nobody set it, it was
        reset, or its stored value no longer fits (see ``snapshot.rejected``)."""
        self.setting(key)
        return self._snapshot.is_default(key)

    @property
    def engine(self) -> AsyncEngine:
        """The settings database's engine while connected (the admin keeps
        its page sessions there); :class:`RuntimeError` otherwise."""
        return self._connected().store.engine

    @property
    def pending_restart(self) -> list[str]:
        """The settings declared ``restart=True`` whose value changed since
        this process started: they take effect after a restart. Under
        ``quart-waffle serve`` the supervisor was asked for a rolling reload
        (:attr:`restart_requested`), which replaces this worker."""
        return sorted(self._started_with)

    def health(self) -> SyncHealth:
        """This worker's sync state: channel, applied revision, last sync."""
        if self._connection is None:
            return SyncHealth(self.config.watchtype, False, self.revision, None, "not started")
        return self._connection.sync.health()

    # Writing and catching up.

    @overload
    async def update(
        self,
        values: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: Literal[False] | None = None,
    ) -> int: ...
    @overload
    async def update(
        self,
        values: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: float | Literal[True],
    ) -> Acknowledgement: ...
    async def update(
        self,
        values: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: float | bool | None = None,
    ) -> int | Acknowledgement:
        """Validate and store ``values`` atomically as one new revision, apply
        them here and notify every other worker; return the new revision, or
        with ``wait`` an :class:`Acknowledgement` once every live worker
        applied it (or the wait ran out).

        Arguments:
            values: Key to new value; every key must be declared. A value equal
                to the default is stored all the same: the key then keeps it
                when the default in code changes (use :meth:`reset` to follow
                the default).
            expected_revision: Raise :class:`ConflictError` if any of these
                keys was changed after this revision (optimistic concurrency).
            actor: Who made the change, recorded in history: at most 200
                characters are kept; control characters (newline, tab, ESC,
                NUL, ...) and lone surrogates are refused.
            reason: Why, recorded in history: at most 500 characters, no
                control characters.
            wait: Seconds to wait (``True``: :data:`DEFAULT_WAIT`, 10) until
                every worker of the [fleet](fleet.md) serves the new
                revision; the answer is then an :class:`Acknowledgement`
                (``complete``, ``pending`` naming host, pid and revision of
                those that have not, ``text``), never an error on timeout.

        Raises :class:`InvalidValueError` (naming each bad key, or
        ``actor``, ``reason`` or ``wait``) before anything is stored.

        Example::

            await waffle.update({"MAX_ITEMS": 50}, expected_revision=waffle.revision, actor="ops")
            ack = await waffle.update({"MAX_ITEMS": 60}, wait=5)
            print(ack.text)  # applied by 40 of 40 workers in 12 ms
        """
        since = time.monotonic()
        within = _wait_seconds(wait)
        actor, reason = checked_actor(actor), checked_reason(reason)
        revision = await self._write(
            self._encode(values), expected_revision, actor, reason, ack=within is not None
        )
        if within is None:
            return revision
        return await self.acknowledged(revision, within=within, since=since)

    @overload
    async def reset(
        self,
        keys: Iterable[str],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: Literal[False] | None = None,
    ) -> int: ...
    @overload
    async def reset(
        self,
        keys: Iterable[str],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: float | Literal[True],
    ) -> Acknowledgement: ...
    async def reset(
        self,
        keys: Iterable[str],
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        wait: float | bool | None = None,
    ) -> int | Acknowledgement:
        """Make ``keys`` follow their declared defaults again, as one new
        revision recorded in history (as :meth:`update` does); a key that
        already follows its default is left alone. ``wait`` as :meth:`update`.

        Example: ``await waffle.reset(["MAX_ITEMS"], actor="ops")``.
        """
        since = time.monotonic()
        within = _wait_seconds(wait)
        actor, reason = checked_actor(actor), checked_reason(reason)
        keys = list(keys)
        unknown = [key for key in keys if key not in self.declarations]
        if unknown or not keys:
            raise InvalidValueError(
                dict.fromkeys(unknown, "unknown setting") or {"": "no settings given"}
            )
        revision = await self._write(
            dict.fromkeys(keys), expected_revision, actor, reason, ack=within is not None
        )
        if within is None:
            return revision
        return await self.acknowledged(revision, within=within, since=since)

    async def refresh(self) -> int:
        """Catch up from the store, reading only what changed after
        :attr:`revision`; return the revision now served. While the app
        serves, receivers of :data:`settings_changed` run after the new
        snapshot is in place."""
        connection = self._connected()
        await self._announce(connection, await self._catch_up(connection))
        return self.revision

    async def _announce(self, connection: _Connection, changes: dict[str, tuple[Any, Any]]) -> None:
        """Send :data:`settings_changed` for ``changes`` while serving; called
        outside the refresh lock, since a receiver may itself update or refresh."""
        if changes and connection.announce:
            try:
                await settings_changed.send_async(
                    connection.app,
                    _sync_wrapper=_call_sync,
                    revision=self.revision,
                    changes=changes,
                )
            except Exception:
                logger.exception("a settings_changed receiver failed")

    async def history(
        self,
        *,
        key: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        revision: int | None = None,
    ) -> list[HistoryEntry]:
        """Recorded changes of every key, newest first; secrets and keys no
        longer declared masked. Filters: one ``key``, one ``actor``,
        ``since`` <= time < ``until`` (aware datetimes), one ``revision``.

        Example: ``await waffle.history(actor="ops", since=yesterday)``.
        """
        if key is not None:
            self.setting(key)
        with unavailable_as_error():
            return await self._connected().store.history(
                key=key,
                before_id=before_id,
                limit=limit,
                actor=actor,
                since=since,
                until=until,
                revision=revision,
            )

    async def revert(
        self, revision: int, *, force: bool = False, actor: str = "", reason: str = ""
    ) -> int:
        """Undo what ``revision`` changed, as a new revision; see :doc:`history`.

        Raises :class:`ConflictError` naming the keys changed after it
        (unless ``force``), :class:`InvalidValueError` when a value no longer fits.

        Example: ``await waffle.revert(41, actor="ops", reason="bad banner")``.
        """
        from .rollback import revert

        return await revert(self, revision, force=force, actor=actor, reason=reason)

    async def restore(
        self,
        revision: int,
        *,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
    ) -> int:
        """Put every setting back as it was at ``revision``, as a new
        revision; :class:`ConflictError` when a key it changes was changed
        after ``expected_revision``. See :doc:`history`.

        Example: ``await waffle.restore(40, expected_revision=waffle.revision)``.
        """
        from .rollback import restore

        return await restore(
            self, revision, expected_revision=expected_revision, actor=actor, reason=reason
        )

    # Scheduled and temporary changes (see docs/schedule.md).

    async def schedule(
        self,
        values: Mapping[str, Any],
        *,
        at: datetime,
        until: datetime | None = None,
        reason: str = "",
        actor: str = "",
        force: bool = False,
    ) -> ScheduledChange:
        """Store ``values`` to be written at ``at`` (a timezone-aware time,
        not in the past) by whichever worker comes first, exactly once; with
        ``until``, put back what was there before at that time, unless a key
        changed meanwhile (then the entry ends in ``conflict``) or ``force``.
        Values are checked as :meth:`update` checks them; nothing is stored
        when one is wrong (:class:`InvalidValueError`).

        Example::

            at = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
            entry = await waffle.schedule(
                {"MAINTENANCE": True}, at=at, until=at + timedelta(hours=8), actor="ops"
            )
        """
        from .schedule import schedule

        return await schedule(
            self, values, at=at, until=until, reason=reason, actor=actor, force=force
        )

    async def scheduled(self, *, limit: int = 100) -> list[ScheduledChange]:
        """The newest scheduled changes (active or not), newest first."""
        from .schedule import scheduled

        return await scheduled(self, limit=limit)

    async def cancel_scheduled(self, entry_id: int, *, actor: str = "") -> ScheduledChange:
        """Cancel a pending change, or the end of an applied temporary change
        (its value stays); :class:`NotCancellableError` when nothing is left."""
        from .schedule import cancel

        return await cancel(self, entry_id, actor=actor)

    async def _run_scheduled(self) -> float | None:
        from .schedule import run_due

        return await run_due(self)

    def override(self, **values: Any) -> Override:
        """Serve ``values`` in this process for a block or a test, with no
        database: a context manager and a decorator (sync or async); see
        :doc:`testing-your-app`.

        Example::

            with waffle.override(MAINTENANCE=True):
                assert waffle.get("MAINTENANCE") is True
        """
        from .testing import Override

        return Override(self, values)

    def _overridden(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in self._overrides:
            merged.update(layer)
        return merged

    # The fleet: every worker of every host on this store (see docs/fleet.md).

    async def fleet(self) -> Fleet:
        """Every worker's presence record, judged now: ``ok``, ``lagging``
        (heartbeat late, channel down, or behind the head for too long) or
        ``gone``; ``head`` is the store's newest revision. Raises
        :class:`StoreUnavailableError` when the presence store cannot be read.

        Example: ``[view.record.pid for view in (await waffle.fleet()).lagging]``.
        """
        connection = self._connected()
        for _ in range(2):
            head: int | None = None
            head_at: float | None = None
            try:
                with unavailable_as_error():
                    head = await connection.store.latest_revision()
                    newest = await connection.store.history(revision=head, limit=1)
            except StoreUnavailableError:
                newest = []
            if newest and newest[0].changed_at is not None:
                head_at = newest[0].changed_at.timestamp()  # the head's commit
            try:
                fleet = await connection.fleet.fleet(head, head_at)
            except Exception as error:
                message = f"presence unreadable: {describe_error(error)}"
                raise StoreUnavailableError(message) from None
            # a worker above the head read a moment ago may serve a write committed since
            if head is None or all(view.record.revision <= head for view in fleet.workers):
                break
        return fleet

    async def acknowledged(
        self, revision: int, *, within: float = DEFAULT_WAIT, since: float | None = None
    ) -> Acknowledgement:
        """Wait until every worker live now serves ``revision`` or newer, or
        ``within`` seconds (counted from ``since``, a ``time.monotonic()``
        reading, default now); see :class:`Acknowledgement`. Never raises for
        the presence store: the answer's ``error`` says it could not be read.
        Raises :class:`InvalidValueError` for a ``within`` that is no duration
        (negative, not finite, over an hour).

        Example (a deploy script)::

            ack = await waffle.acknowledged(128, within=30)
            if not ack.complete:
                print(ack.text)  # "applied by 39 of 40 workers in 30000 ms; not yet: ..."
        """
        if isinstance(within, bool) or not isinstance(within, int | float):
            raise InvalidValueError({"within": "must be a number of seconds"})
        if not 0 <= within <= MAX_WAIT:  # NaN too, which would wait forever
            raise InvalidValueError({"within": f"must be from 0 to {MAX_WAIT:g} seconds"})
        start = time.monotonic() if since is None else since
        if not math.isfinite(start):
            raise InvalidValueError({"since": "must be a time.monotonic() reading"})
        return await self._connected().fleet.wait(revision, within, start)

    # Lifecycle.

    @contextlib.asynccontextmanager
    async def connected(self, *, watch: bool = False) -> AsyncIterator[QuartWaffle]:
        """Open the store and channel for a script or a test, without serving;
        :data:`settings_changed` is not sent.

        Example::

            async with waffle.connected():
                await waffle.update({"MAINTENANCE": True}, actor="deploy script")
        """
        await self.start(watch=watch, announce=False)
        try:
            yield self
        finally:
            await self.stop()

    async def start(self, *, watch: bool = True, announce: bool = True) -> None:
        """Connect, create tables if asked, subscribe, then load; with
        ``watch``, start the background sync task; with ``announce``, send
        :data:`settings_changed` for changes applied from now on. On failure
        everything opened so far is closed again."""
        app, config = self._registration()
        if self._connection is not None:
            raise RuntimeError("QuartWaffle.start: already started (call stop() first).")
        engine = self._engine or create_engine(config.database_url)
        store = SettingsStore(engine, self.declarations)
        try:
            with unavailable_as_error():
                if config.create_tables:
                    await store.create_tables()
                await store.ensure_head()
                identity = await store.identity()
                await store.forget_secrets()
            sync = SyncRunner(
                make_channel(config, engine),
                self.refresh,
                lambda: self.revision,
                config.check_interval,
                apply=self._apply_carried,
                key=_message_key(config.sync_key or app.config.get("SECRET_KEY")),
                store=identity,
                observer=sync_observer(),
                tick=self._run_scheduled,
            )
        except BaseException:
            if self._engine is None:
                await engine.dispose()
            raise
        fleet = fleet_member(config, engine, identity, sync.health)
        owns_engine = self._engine is None
        connection = self._connection = _Connection(
            app, config, store, identity, sync, asyncio.Lock(), announce, owns_engine, fleet
        )
        try:
            if watch:
                fleet.start(sync)  # the heartbeat: a timer of the one sync task
            await sync.start(watch=watch, load=lambda: self._catch_up(connection))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the sync task, close the channel and (our own) engine."""
        connection = self._connection
        if connection is not None:
            # still connected while the sync task winds down: a catch-up it
            # is finishing must not fail with "not connected"
            try:
                await connection.close()
            finally:
                self._connection = None

    async def _before_serving(self) -> None:
        _ensure_log_format()
        await self.start(watch=True)

    async def _after_serving(self) -> None:
        await self.stop()

    # Internals.

    def _registration(self) -> tuple[Quart, WaffleConfig]:
        if self.app is None or self._config is None:
            raise RuntimeError("QuartWaffle is not initialised: call init_app(app) first.")
        return self.app, self._config

    def _connected(self) -> _Connection:
        if self._connection is None:
            raise RuntimeError(
                "quart-waffle is not connected: the app must be serving (or use"
                " `async with waffle.connected():`)."
            )
        return self._connection

    def _encode(self, values: Mapping[str, Any]) -> dict[str, str | None]:
        errors: dict[str, str] = {}
        encoded: dict[str, str | None] = {}
        for key, value in values.items():
            setting = self.declarations.get(key)
            if setting is None:
                errors[key] = "unknown setting"
                continue
            try:
                encoded[key] = setting.encode(setting.validate(value))
            except InvalidValueError as error:
                errors.update(error.errors)
        if errors:
            raise InvalidValueError(errors)
        if not encoded:
            raise InvalidValueError({"": "no settings given"})
        return encoded

    async def _write(
        self,
        encoded: Mapping[str, str | None],
        expected_revision: int | None,
        actor: str,
        reason: str = "",
        guard: WriteGuard | None = None,
        *,
        ack: bool = False,
    ) -> int:
        """Store ``encoded`` (None: back to the default), apply it here, notify;
        ``guard`` as :meth:`SettingsStore.write` takes it; ``ack``: the writer
        will wait for the fleet, so every worker publishes its presence at once."""
        connection = self._connected()
        defaults = {
            key: self.declarations[key].encode(self.declarations[key].default) for key in encoded
        }
        with unavailable_as_error():
            result = await connection.store.write(
                encoded,
                defaults=defaults,
                expected_revision=expected_revision,
                actor=actor,
                reason=reason,
                guard=guard,
            )
        if result.revision is None:
            return self.revision
        try:
            if not await self._apply_change(
                connection, result.revision - 1, result.changes, urgent=ack
            ):
                await self.refresh()
        except StoreUnavailableError as error:
            # committed all the same: the others must hear of it, and this worker
            # catches up at its next check
            logger.warning(
                "revision %d is committed; applying it here failed: %s", result.revision, error
            )
        await connection.sync.notify(
            result.revision, _travelling(self.declarations, result.changes), ack=ack
        )
        return result.revision

    async def _apply_carried(self, change: Carried) -> bool:
        """Apply a change another worker's message carried; the sync task
        catches up from the store instead when this returns False."""
        return await self._apply_change(
            self._connected(), change.base, dict(change.changes), urgent=change.ack
        )

    async def _apply_change(
        self,
        connection: _Connection,
        base: int,
        changes: Mapping[str, str | None],
        *,
        urgent: bool = True,
    ) -> bool:
        """Apply revision ``base + 1``'s ``changes`` (key to stored JSON text,
        None: back to the default) with no database round trip, if this worker
        serves ``base`` and every key is declared here with a value that fits;
        return whether it did. Each value is decoded and validated once.
        ``urgent``: publish presence at once (someone waits), else at the
        next heartbeat."""
        values: dict[str, Any] = {}
        for key, text in changes.items():
            setting = self.declarations.get(key)
            if setting is None:
                return False
            if text is not None:
                try:
                    values[key] = setting.decode(text)
                except InvalidValueError:
                    return False
        async with connection.refresh_lock:
            if not changes or self._snapshot.revision != base:
                return False
            defaults = changes.keys() - values.keys()
            for key in defaults:
                values[key] = self.declarations[key].default
            applied = self._swap(
                connection,
                base + 1,
                values,
                dict.fromkeys(changes, base + 1),
                defaults,
                {},
                urgent=urgent,
            )
        await self._announce(connection, applied)
        return True

    async def _catch_up(self, connection: _Connection) -> dict[str, tuple[Any, Any]]:
        """Apply what changed in the store after :attr:`revision`; return key
        to (old, new) for the values that changed. When the store's newest
        revision is below the one served (a database restored from a backup),
        reload every key from the store instead."""
        store = connection.store
        async with connection.refresh_lock:
            served = self._snapshot.revision
            with unavailable_as_error():
                rows = await store.changes_since(served)
                # a write in between can only raise the newest revision: no false alarm
                behind = not rows and served > 0 and await store.latest_revision() < served
                if behind:
                    rows = await store.changes_since(-1)
            if behind:
                logger.warning(
                    "the store's newest revision is below revision %d, which this worker"
                    " served (a database restored from a backup?): reloaded every setting"
                    " from the store",
                    served,
                )
            return self._apply(connection, rows, reload=behind)

    def _defaults(self) -> Snapshot:
        """The snapshot before any load: every key at its declared default."""
        return Snapshot.of(
            -1,
            {key: setting.default for key, setting in self.declarations.items()},
            dict.fromkeys(self.declarations, 0),
            self.declarations,
        )

    def _restart_if_needed(self, changes: Mapping[str, tuple[Any, Any]], revision: int) -> None:
        """Note the restart-required settings among ``changes`` and, under the
        supervisor, ask it for a rolling reload (every worker asks; it makes one).
        A secret's write always awaits a restart, even of the value this process
        started with: whether it did must not tell a writer who may not read the
        secret that a guess was right."""
        changed: list[str] = []
        for key, (old, new) in changes.items():
            setting = self.declarations[key]
            if not setting.restart:
                continue
            started = self._started_with.setdefault(key, old)
            if new == started and not setting.secret:
                del self._started_with[key]  # back to what this process runs with
            else:
                changed.append(key)
        if not changed:
            return
        reason = f"{', '.join(sorted(changed))} changed at revision {revision}"
        if _ask_supervisor_restart(reason):
            self.restart_requested = True
            logger.info("%s: asked the supervisor for a rolling restart", reason)
        else:
            logger.warning("%s: takes effect after a restart", reason)

    def _apply(
        self, connection: _Connection, rows: list[StoredValue], *, reload: bool = False
    ) -> dict[str, tuple[Any, Any]]:
        """Swap in a snapshot with ``rows`` applied (with ``reload``, ``rows``
        are every stored key and replace the whole snapshot); return key to
        (old, new)."""
        values: dict[str, Any] = {}
        revisions: dict[str, int] = {}
        defaults: set[str] = set()
        rejected: dict[str, str] = {}
        for row in rows:
            setting = self.declarations.get(row.key)
            if setting is None:
                continue  # declared by another deployment of the app, or removed
            revisions[row.key] = row.revision
            if row.text is not None:
                try:
                    values[row.key] = setting.decode(row.text)
                    continue
                except InvalidValueError as error:
                    reason = "; ".join(error.errors.values())
                    logger.warning(
                        "%s: the stored value no longer fits its declaration (%s);"
                        " serving the default",
                        row.key,
                        reason,
                    )
                    rejected[row.key] = reason
            values[row.key] = setting.default
            defaults.add(row.key)
        # a store that holds nothing yet is at revision 0
        revision = max([0, *(row.revision for row in rows)])
        return self._swap(
            connection, revision, values, revisions, defaults, rejected, reload=reload
        )

    def _swap(
        self,
        connection: _Connection,
        revision: int,
        values: dict[str, Any],
        revisions: dict[str, int],
        defaults: Iterable[str],
        rejected: dict[str, str],
        *,
        reload: bool = False,
        urgent: bool = True,
    ) -> dict[str, tuple[Any, Any]]:
        """Swap in a snapshot at ``revision`` with ``values`` (decoded and
        validated) laid over the one served (with ``reload``, over the
        defaults); return key to (old, new) for the values that changed.
        ``urgent``: this worker's presence is published at once, else at its
        next heartbeat (a carried change nobody waits for)."""
        old = self._snapshot
        base = self._defaults() if reload else old
        self._snapshot = new = base.merged(revision, values, revisions, defaults, rejected)
        connection.fleet.changed(new.revision, urgent=urgent)
        connection.sync.observer.served(revision)
        touched = new.values if reload else values
        changes = {
            key: (old.values[key], new.values[key])
            for key in touched
            if old.values[key] != new.values[key]
        }
        if old.revision >= 0:  # the first load is what this process starts with
            # a secret's write counts as a change even when equal (see _restart_if_needed)
            secrets = [] if reload else [key for key in values if self.declarations[key].secret]
            written = {key: (old.values[key], new.values[key]) for key in secrets}
            self._restart_if_needed({**written, **changes}, revision)
        if connection.config.mirror_config:
            connection.app.config.update({key: new.values[key] for key in touched})
            # an active override keeps what app.config shows (never stale)
            connection.app.config.update(self._overridden())
        return changes


def _wait_seconds(wait: float | bool | None) -> float | None:
    """``wait`` of a write as seconds, None for no wait; a number that is no
    duration (negative, not finite, over an hour) is refused."""
    if wait is None or wait is False:
        return None
    if wait is True:
        return DEFAULT_WAIT
    if not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT:
        reason = f"must be true or a number of seconds from 0 to {MAX_WAIT:g}"
        raise InvalidValueError({"wait": reason})
    return float(wait)


def _ask_supervisor_restart(reason: str) -> bool:
    """Ask ``quart-waffle serve`` for a rolling reload when this process is
    one of its workers; False otherwise (the supervisor is imported only then)."""
    if os.environ.get("QUART_WAFFLE_GENERATION") is None:
        return False
    from .supervisor.worker import request_restart

    return request_restart(reason)


def _message_key(secret: object) -> bytes | None:
    """The key signing sync messages, from ``WAFFLE_SYNC_KEY`` or ``SECRET_KEY``."""
    return derive_key(secret) if isinstance(secret, (str, bytes)) and secret else None


def _travelling(
    declarations: Mapping[str, Setting[Any]], changes: Mapping[str, str | None]
) -> Mapping[str, str | None] | None:
    """What of ``changes`` a sync message may carry: all, or none when one of
    them would be masked when shown (a secret, whose value never leaves the
    database: the other workers then catch up from the store)."""
    # the one masking rule decides, as for history
    if any(display_value(declarations, key, None) is not None for key in changes):
        return None
    return changes


def _refuse_shadowing(
    app: Quart, declarations: Mapping[str, Setting[Any]], *, mirror_config: bool
) -> None:
    """A setting may not take the name of one of Quart's own config keys nor a
    ``WAFFLE_*`` option (the admin would then edit the app's secret key), nor,
    while values are mirrored into ``app.config``, of a key the app already
    set (its value would be silently replaced)."""
    own = sorted(
        key for key in declarations if key in app.default_config or key.startswith("WAFFLE_")
    )
    if own:
        raise DeclarationError(
            f"settings {', '.join(own)} would replace Quart's or quart-waffle's own"
            " configuration of the same name: rename them"
        )
    taken = sorted(key for key in declarations if mirror_config and key in app.config)
    if taken:
        raise DeclarationError(
            f"settings {', '.join(taken)} would replace the app's configuration of the same"
            " name (app.config already holds them): rename the settings, remove the keys"
            " from app.config, or turn WAFFLE_MIRROR_CONFIG off"
        )


def _ensure_log_format() -> None:
    """Give quart-waffle's log lines a time, level and pid when the app has not
    configured logging (as under a bare ``hypercorn -w N``)."""
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)


def _call_sync(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Run a sync signal receiver in the event loop: receivers must be quick."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call
