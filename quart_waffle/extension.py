"""The ``QuartWaffle`` extension: wires declarations, store and sync into the
Quart lifecycle and holds this worker's snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar, overload

from quart import Quart, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import WaffleConfig
from .errors import InvalidValueError, StoreUnavailableError, UnknownSettingError
from .settings import Setting, declare
from .signals import settings_changed
from .snapshot import Snapshot
from .store import (
    HistoryEntry,
    SettingsStore,
    StoredValue,
    create_engine,
    unavailable_as_error,
)
from .sync import SyncHealth, SyncRunner, make_channel

T = TypeVar("T")
Authorizer = Callable[[Request], Awaitable[bool]]
"""Decides whether a request may use the admin; see :doc:`admin`."""

logger = logging.getLogger("quart_waffle")


class QuartWaffle:
    """Runtime-editable settings for a Quart app, kept in step across workers.

    Arguments:
        app: The app, or None to call :meth:`init_app` later.
        settings: :class:`Setting` declarations, besides ``WAFFLE_CONFS``.
        engine: An ``AsyncEngine`` of your own; it is not disposed by us.
        authorize: An async callback deciding who may use the admin.
        **options: Any ``WAFFLE_*`` option in lower case without the prefix
            (``database_url="postgresql://..."``, ``watchtype="redis"``, ...);
            it wins over ``app.config``.

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
        **options: Any,
    ) -> None:
        self._settings = list(settings)
        self._engine = engine
        self.authorize = authorize
        self._options = options
        self.app: Quart | None = None
        self.config: WaffleConfig | None = None
        self.declarations: dict[str, Setting[Any]] = {}
        self._snapshot = Snapshot.of(-1, {}, {})
        self._store: SettingsStore | None = None
        self._sync: SyncRunner | None = None
        self._refresh_lock: asyncio.Lock | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Register on ``app``: declarations are checked, defaults mirrored
        into ``app.config``; nothing is opened until the app starts serving."""
        if "waffle" in app.extensions:
            raise RuntimeError(
                "A QuartWaffle extension is already registered on this app. Create one"
                " QuartWaffle per app and call init_app once."
            )
        if self.app is not None:
            raise RuntimeError(
                "This QuartWaffle is already bound to another app: create one QuartWaffle per app."
            )
        self.config = WaffleConfig.resolve(app, self._options)
        self.declarations = declare(self.config.confs, self._settings)
        self._snapshot = Snapshot.of(
            -1,
            {key: setting.default for key, setting in self.declarations.items()},
            dict.fromkeys(self.declarations, 0),
        )
        self.app = app
        if self.config.mirror_config:
            app.config.update(self._snapshot.values)
        app.extensions["waffle"] = self
        app.before_serving(self._before_serving)
        app.after_serving(self._after_serving)
        from .cli import waffle_cli

        app.cli.add_command(waffle_cli)
        if self.config.admin_prefix is not None:
            from .admin import register_admin

            register_admin(app, self)

    # Reading: a dict lookup, no I/O.

    @property
    def snapshot(self) -> Snapshot:
        """Every value this worker serves, at :attr:`revision`."""
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
            return self._snapshot.values[name]
        except KeyError:
            raise UnknownSettingError(name) from None

    def setting(self, key: str) -> Setting[Any]:
        """The declaration of ``key``."""
        try:
            return self.declarations[key]
        except KeyError:
            raise UnknownSettingError(key) from None

    def health(self) -> SyncHealth:
        """This worker's sync state: channel, applied revision, last sync."""
        if self._sync is None:
            return SyncHealth(self._watchtype(), False, self.revision, None, "not started")
        return self._sync.health()

    # Writing and catching up.

    async def update(
        self,
        values: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        actor: str = "",
    ) -> int:
        """Validate and store ``values`` atomically as one new revision, apply
        them here and notify every other worker; return the new revision.

        Arguments:
            values: Key to new value; every key must be declared.
            expected_revision: Raise :class:`ConflictError` if any of these
                keys was changed after this revision (optimistic concurrency).
            actor: Who made the change, recorded in history.

        Raises :class:`InvalidValueError` (naming each bad key) before
        anything is stored.

        Example::

            await waffle.update({"MAX_ITEMS": 50}, expected_revision=waffle.revision, actor="ops")
        """
        encoded = self._encode(values)
        store = self._require_store()
        with unavailable_as_error():
            result = await store.write(encoded, expected_revision=expected_revision, actor=actor)
        if result.revision is None:
            return self.revision
        try:
            await self.refresh()
        except StoreUnavailableError as error:
            # committed all the same: the others must hear of it, and this worker
            # catches up at its next check
            logger.warning(
                "revision %d is committed; applying it here failed: %s", result.revision, error
            )
        assert self._sync is not None
        await self._sync.notify(result.revision)
        return result.revision

    async def reset(
        self, keys: Iterable[str], *, expected_revision: int | None = None, actor: str = ""
    ) -> int:
        """Set ``keys`` back to their declared defaults, as :meth:`update` does."""
        return await self.update(
            {key: self.setting(key).default for key in keys},
            expected_revision=expected_revision,
            actor=actor,
        )

    async def refresh(self) -> int:
        """Catch up from the store, reading only what changed after
        :attr:`revision`; return the revision now served. Receivers of
        :data:`settings_changed` run after the new snapshot is in place."""
        store = self._require_store()
        assert self._refresh_lock is not None
        async with self._refresh_lock:
            with unavailable_as_error():
                rows = await store.changes_since(self._snapshot.revision)
            changes = self._apply(rows) if rows else {}
            revision = self.revision
        if changes:
            # outside the lock: a receiver may itself update or refresh
            try:
                await settings_changed.send_async(
                    self.app, _sync_wrapper=_call_sync, revision=revision, changes=changes
                )
            except Exception:
                logger.exception("a settings_changed receiver failed")
        return self.revision

    async def history(
        self, *, key: str | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[HistoryEntry]:
        """Recorded changes, newest first (values as stored, not masked)."""
        if key is not None:
            self.setting(key)
        with unavailable_as_error():
            return await self._require_store().history(key=key, before_id=before_id, limit=limit)

    # Lifecycle.

    @contextlib.asynccontextmanager
    async def connected(self, *, watch: bool = False) -> AsyncIterator[QuartWaffle]:
        """Open the store and channel for a script or a test, without serving.

        Example::

            async with waffle.connected():
                await waffle.update({"MAINTENANCE": True}, actor="deploy script")
        """
        await self.start(watch=watch)
        try:
            yield self
        finally:
            await self.stop()

    async def start(self, *, watch: bool = True) -> None:
        """Connect, create tables and seed defaults if asked, subscribe, then
        load; with ``watch``, start the background sync task. On failure
        everything opened so far is closed again."""
        config = self._require_config()
        engine = self._engine or create_engine(config.database_url)
        self._store = SettingsStore(engine)
        self._refresh_lock = asyncio.Lock()  # bound to the loop that serves
        try:
            with unavailable_as_error():
                if config.create_tables:
                    await self._store.create_tables()
                await self._store.seed(
                    {
                        key: setting.encode(setting.default)
                        for key, setting in self.declarations.items()
                    }
                )
            self._sync = SyncRunner(
                make_channel(config, engine),
                self.refresh,
                lambda: self.revision,
                config.check_interval,
            )
            await self._sync.start(watch=watch)
            await self.refresh()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the sync task, close the channel and (our own) engine."""
        if self._sync is not None:
            await self._sync.stop()
            self._sync = None
        if self._store is not None:
            if self._engine is None:
                await self._store.engine.dispose()
            self._store = None

    async def _before_serving(self) -> None:
        await self.start(watch=True)

    async def _after_serving(self) -> None:
        await self.stop()

    # Internals.

    def _encode(self, values: Mapping[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        encoded: dict[str, str] = {}
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

    def _apply(self, rows: list[StoredValue]) -> dict[str, tuple[Any, Any]]:
        """Swap in a snapshot with ``rows`` applied; return key to (old, new)."""
        old = self._snapshot
        values: dict[str, Any] = {}
        revisions: dict[str, int] = {}
        for row in rows:
            setting = self.declarations.get(row.key)
            if setting is None:
                continue  # declared by another deployment of the app
            try:
                values[row.key] = setting.decode(row.text)
            except InvalidValueError as error:
                logger.warning("ignoring stored value that no longer fits: %s", error)
                continue
            revisions[row.key] = row.revision
        self._snapshot = old.merged(max(row.revision for row in rows), values, revisions)
        changes = {
            key: (old.values[key], value)
            for key, value in values.items()
            if old.values[key] != value
        }
        app = self.app
        assert app is not None
        assert self.config is not None
        if self.config.mirror_config:
            app.config.update(values)
        return changes

    def _watchtype(self) -> str:
        return self._require_config().watchtype

    def _require_config(self) -> WaffleConfig:
        if self.config is None:
            raise RuntimeError("QuartWaffle is not initialised: call init_app(app) first.")
        return self.config

    def _require_store(self) -> SettingsStore:
        if self._store is None:
            raise RuntimeError(
                "quart-waffle is not connected: the app must be serving (or use"
                " `async with waffle.connected():`)."
            )
        return self._store


def _call_sync(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Run a sync signal receiver in the event loop: receivers must be quick."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call
