"""The SQLAlchemy async store: stored values, the global revision and history.

Values cross this module as JSON text; declarations and types are the
caller's business. Every write is one transaction that takes the next
revision from a one-row ``waffle_head`` table. Updating that row serialises
writers, so revisions commit in order and a reader that has seen revision R
has seen everything up to R.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_

from .errors import ConfigurationError, ConflictError, StoreUnavailableError
from .kinds import load_json, storable_text
from .limits import MAX_ACTOR_LENGTH
from .settings import MAX_KEY_LENGTH, SECRET_MASK, UNREADABLE_MARK, Setting, display_value

metadata = MetaData()
"""The tables of quart-waffle, for ``create_all`` or Alembic autogenerate."""

_BigId = BigInteger().with_variant(Integer(), "sqlite")

head_table = Table(
    "waffle_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)
settings_table = Table(
    "waffle_settings",
    metadata,
    Column("key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
    Column("revision", BigInteger, nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),
)
store_table = Table(
    "waffle_store",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(64), nullable=False),
)
"""One row: a random identity made once per database, which sync messages
name so that a worker applies only changes made to its own store."""
presence_table = Table(
    "waffle_presence",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("heartbeat", Float, nullable=False),
    Column("record", Text, nullable=False),
)
"""One row per worker of a fleet whose channel keeps no presence of its own
(``postgres``, ``none``): its JSON presence record (docs/fleet.md). A
database made by an older version gets it at the next start, as
``create_all`` creates missing tables."""
history_table = Table(
    "waffle_history",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("revision", BigInteger, nullable=False, index=True),
    Column("key", String(MAX_KEY_LENGTH), nullable=False, index=True),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(MAX_ACTOR_LENGTH), nullable=False),
    Column("reason", Text, nullable=True),  # new after 0.1: create_tables adds it to older tables
)
kept_table = Table(
    "waffle_kept_values",
    metadata,
    Column("revision", BigInteger, primary_key=True),
    Column("key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("old_text", Text, nullable=True),
    Column("new_text", Text, nullable=True),
)
"""The exact stored text before and after each change (None: the key followed
its default), secrets included, as ``waffle_settings`` holds them: what a
rollback restores. Never shown; history shows the masked record."""

schedule_table = Table(
    "waffle_schedule",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False, index=True),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=True),
    Column("changes", Text, nullable=False),
    Column("force", Boolean, nullable=False),
    Column("actor", String(MAX_ACTOR_LENGTH), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("applied_revision", BigInteger, nullable=True),
    Column("reverted_revision", BigInteger, nullable=True),
    Column("detail", Text, nullable=True),
)
"""Scheduled and temporary changes (docs/schedule.md), run by
:mod:`quart_waffle.schedule`: ``changes`` is a JSON object of key to stored
JSON text; ``due_at`` is when the next step is due (``at``, then ``until``).
A database made by an older version gets it at the next start."""

_HEAD_ID = 1
_SECRET_TEXT = json.dumps(SECRET_MASK)
_CREATE_LOCK_ID = 0x5AFF1E  # PostgreSQL advisory lock taken while creating tables
_UNAVAILABLE = (OperationalError, InterfaceError, OSError, TimeoutError)


WriteGuard = Callable[[AsyncConnection, int], Awaitable[None]]
"""Called by :meth:`SettingsStore.write` inside its transaction with the
revision it is writing; raising aborts the write."""


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A key's stored JSON text and the revision that last changed it;
    ``text`` is None when the key follows its declared default (reset)."""

    key: str
    text: str | None
    revision: int


DEFAULT_MARKER = ""
"""The stored value of a key reset to its declared default (never valid JSON)."""


def _override(value: str, revision: int) -> str | None:
    """A row's value, or None when it stands for the declared default: reset
    (the marker) or seeded at revision 0 by quart-waffle 0.1."""
    return None if value == DEFAULT_MARKER or revision == 0 else value


def _loads(text: str | None) -> Any:
    """A stored value read back, :data:`UNREADABLE_MARK` if it cannot be."""
    if text is None:
        return None
    try:
        return load_json(text)
    except ValueError:
        return UNREADABLE_MARK


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the revision it created, or None when every value was
    already as asked (nothing was written); ``changes`` what that revision
    changed over the one before it (revisions are consecutive): key to JSON
    text, None for a key reset to its default."""

    revision: int | None
    changes: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded change of one key; ``id`` grows in commit order."""

    id: int
    revision: int
    key: str
    old_value: Any
    new_value: Any
    changed_at: datetime | None  # None: the stored time cannot be read
    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PastValue:
    """What a key stored at some revision: ``text`` is the stored JSON text
    (None: it followed its default). ``kept`` is False when the change
    predates kept values (quart-waffle 0.1): ``text`` is then history's
    record, the default's text for a reset and the mask for a secret."""

    key: str
    text: str | None
    kept: bool = True


def normalise_url(url: str) -> str:
    """Pick the async driver for plain ``sqlite://`` and ``postgresql://`` URLs."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite files get WAL and a generous busy timeout
    so that several worker processes share one file safely."""
    url = normalise_url(url)
    # hide_parameters: a failed statement's message must never carry a (secret) value
    if not make_url(url).drivername.startswith("sqlite"):
        return _server_engine(url)
    _make_directory(make_url(url).database)
    _create_private(make_url(url).database)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # switching to WAL needs a moment alone with the file and answers "locked"
        # at once, busy timeout or not, while another worker starts: retry (this
        # runs on the driver's connection thread, never on the event loop)
        for attempt in range(100):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except Exception as error:  # the adapted driver's OperationalError
                if "locked" not in str(error) or attempt == 99:
                    raise
                time.sleep(0.05)
        cursor.close()

    return engine


CONNECT_RETRY_TIME = 60.0
"""Seconds a connection attempt keeps retrying while the server has no free
connection ("too many clients") or is starting up."""
_BUSY_STATES = {"53300", "57P03"}  # too_many_connections, cannot_connect_now


def _server_engine(url: str) -> AsyncEngine:
    """An engine holding no idle connection (each use opens its own and closes
    it after: a worker needs the database only at start-up, for writes, gaps
    and checks), whose connection attempts retry, with jitter, while the
    server is out of connections instead of failing. Prepared statements are
    never cached and get unique names, so a pooler in transaction mode
    (PgBouncer) can hand each transaction another server connection; with
    connections this short-lived, a cache would not be reused anyway."""
    engine = create_async_engine(
        url,
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={
            "statement_cache_size": 0,  # asyncpg's own cache
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__waffle_{uuid.uuid4().hex}__",
        },
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # runs inside SQLAlchemy's greenlet on the event loop: await_ sleeps without blocking it
        deadline = time.monotonic() + CONNECT_RETRY_TIME
        delay = 0.05
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except Exception as error:
                state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
                if state not in _BUSY_STATES or time.monotonic() >= deadline:
                    raise
            await_(asyncio.sleep(random.uniform(delay / 2, delay)))
            delay = min(delay * 2, 1.0)

    return engine


def _make_directory(database: str | None) -> None:
    """Create the directory of an SQLite file (0700: the store holds secret
    values), or raise one clear :class:`ConfigurationError` naming it."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = os.path.dirname(os.path.abspath(database))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigurationError(
            f"cannot create the directory {directory} for the SQLite store ({reason}):"
            " create it writable by the server, or set WAFFLE_DATABASE_URL elsewhere"
        ) from None
    if not os.access(directory, os.W_OK):
        raise ConfigurationError(
            f"the directory {directory} of the SQLite store is not writable: make it"
            " writable by the server, or set WAFFLE_DATABASE_URL elsewhere"
        )


def _create_private(database: str | None) -> None:
    """Create a missing SQLite file readable by its owner only (0600), before
    SQLite would create it with the umask's mode: it holds secret values and
    the admin's session digests. SQLite gives its -wal and -shm files the
    same mode. An existing file is left as it is."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    # it exists already; or SQLite's own open names the problem
    with contextlib.suppress(OSError):
        os.close(os.open(database, flags, 0o600))


def _insert_for(connection: AsyncConnection | Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


class SettingsStore:
    """Stored settings on one SQLAlchemy async engine.

    Arguments:
        engine: Any SQLite (aiosqlite) or PostgreSQL (asyncpg) async engine.
        declarations: The declared settings. History never keeps the value of
            a secret, nor shows the value of a secret or of a key not declared
            here: without declarations, every recorded value is masked.
    """

    def __init__(
        self, engine: AsyncEngine, declarations: Mapping[str, Setting[Any]] | None = None
    ) -> None:
        self.engine = engine
        self.declarations: Mapping[str, Setting[Any]] = declarations or {}

    async def create_tables(self) -> None:
        """Create the tables if missing; safe when several processes race."""
        for attempt in range(5):
            try:
                async with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        await connection.execute(
                            text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CREATE_LOCK_ID}
                        )
                    await connection.run_sync(metadata.create_all)
                    await connection.run_sync(_add_missing_columns)
                return
            except DBAPIError as error:
                # another process created a table between our check and our CREATE
                racing = "already exists" in str(error) or "duplicate column" in str(error)
                if not racing or attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def ensure_head(self) -> None:
        """Create the revision counter (at 0) if missing; an upsert, so workers
        starting together never collide. Nothing else is stored: a key without a
        row serves its declared default. A read first: once the counter exists,
        a worker starting writes nothing (a thousand starting at once on SQLite
        would otherwise queue for its one writer, past its lock timeout)."""
        async with self.engine.connect() as connection:
            head = select(head_table.c.id).where(head_table.c.id == _HEAD_ID)
            if await connection.scalar(head) is not None:
                return
        async with self.engine.begin() as connection:
            await connection.execute(
                _insert_for(connection)(head_table)
                .values(id=_HEAD_ID, revision=0)
                .on_conflict_do_nothing(index_elements=["id"])
            )

    async def identity(self) -> str:
        """This database's identity, created on first use: an upsert then a
        read, so workers starting together all get the one that won; once it
        exists, a read alone."""
        query = select(store_table.c.identity).where(store_table.c.id == _HEAD_ID)
        async with self.engine.connect() as connection:
            identity = await connection.scalar(query)
        if identity is not None:
            return str(identity)
        async with self.engine.begin() as connection:
            await connection.execute(
                _insert_for(connection)(store_table)
                .values(id=_HEAD_ID, identity=secrets.token_hex(16))
                .on_conflict_do_nothing(index_elements=["id"])
            )
            identity = await connection.scalar(query)
        return str(identity)

    async def forget_secrets(self) -> None:
        """Replace the values of secret settings kept in history by earlier
        versions (which recorded them in clear) with the secret marker; a
        no-op once done, so every worker may run it at start-up."""
        secrets = [key for key, setting in self.declarations.items() if setting.secret]
        if not secrets:
            return
        column = history_table.c
        async with self.engine.begin() as connection:
            await connection.execute(
                update(history_table)
                .where(column.key.in_(secrets))
                .where(or_(column.new_value != _SECRET_TEXT, column.old_value != _SECRET_TEXT))
                .values(
                    old_value=case((column.old_value.is_(None), None), else_=_SECRET_TEXT),
                    new_value=_SECRET_TEXT,
                )
            )

    async def changes_since(self, revision: int) -> list[StoredValue]:
        """Every key changed after ``revision`` (all keys for -1), in one
        statement and so one consistent snapshot. The newest revision stored
        is the largest revision returned: every revision changes some key."""
        query = select(
            settings_table.c.key, settings_table.c.value, settings_table.c.revision
        ).where(settings_table.c.revision > revision)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            StoredValue(row.key, _override(row.value, row.revision), row.revision) for row in rows
        ]

    async def latest_revision(self) -> int:
        """The newest committed revision."""
        async with self.engine.connect() as connection:
            value = await connection.scalar(select(func.max(settings_table.c.revision)))
        return int(value or 0)

    async def write(
        self,
        values: Mapping[str, str | None],
        *,
        defaults: Mapping[str, str] | None = None,
        expected_revision: int | None = None,
        actor: str = "",
        reason: str = "",
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        """Store ``values`` (key to JSON text) atomically as one new revision.

        A value of None resets the key: it follows its declared default from
        then on. ``defaults`` (key to the default's JSON text) is what history
        and conflicts show for a key that follows its default; it must cover
        every key reset. With ``expected_revision``, raise
        :class:`ConflictError` if any of the keys was changed after it. Keys
        whose value is unchanged are skipped, but for a secret's value (see
        :meth:`_always_written`); if all are, nothing is written.
        ``actor`` and ``reason`` (checked by the caller) are kept in history.
        ``guard`` runs in the transaction once the new revision is taken
        (writers serialised): raising there writes nothing (a scheduled
        change claims its row so, see :mod:`quart_waffle.schedule`).
        """
        defaults = defaults or {}
        missing = sorted(
            key for key, text in values.items() if text is None and key not in defaults
        )
        if missing:
            raise ValueError(f"reset needs the default text of {missing}")
        now = datetime.now(UTC)
        async with self.engine.connect() as connection:
            # bump first: the row lock (PostgreSQL) or write lock (SQLite) is held from here
            revision = (
                await connection.execute(
                    update(head_table)
                    .where(head_table.c.id == _HEAD_ID)
                    .values(revision=head_table.c.revision + 1)
                    .returning(head_table.c.revision)
                )
            ).scalar_one()
            if guard is not None:
                await guard(connection, revision)
            rows = {
                row.key: row
                for row in await connection.execute(
                    select(settings_table).where(settings_table.c.key.in_(list(values)))
                )
            }
            overrides = {key: _override(row.value, row.revision) for key, row in rows.items()}

            def shown(key: str, text: str | None) -> str | None:
                return defaults.get(key) if text is None else text

            if expected_revision is not None:
                stale = {key: row for key, row in rows.items() if row.revision > expected_revision}
                if stale:
                    await connection.rollback()
                    raise ConflictError(
                        expected_revision,
                        {key: _loads(shown(key, overrides[key])) for key in stale},
                        {key: row.revision for key, row in stale.items()},
                    )
            changed = {
                key: value
                for key, value in values.items()
                if overrides.get(key) != value or self._always_written(key, value)
            }
            if not changed:
                await connection.rollback()
                return WriteResult(None)
            await self._apply(connection, changed, revision, now)
            await connection.execute(
                history_table.insert(),
                [
                    {
                        "revision": revision,
                        "key": key,
                        "old_value": self._recorded(key, shown(key, overrides.get(key))),
                        "new_value": self._recorded(key, shown(key, new)),
                        "changed_at": now,
                        "actor": storable_text(actor)[:MAX_ACTOR_LENGTH],
                        "reason": storable_text(reason) or None,
                    }
                    for key, new in changed.items()
                ],
            )
            await connection.execute(
                kept_table.insert(),
                [
                    {
                        "revision": revision,
                        "key": key,
                        "old_text": overrides.get(key),
                        "new_text": new,
                    }
                    for key, new in changed.items()
                ],
            )
            await connection.commit()
        return WriteResult(revision, changed)

    async def _apply(
        self,
        connection: AsyncConnection,
        changed: Mapping[str, str | None],
        revision: int,
        now: datetime,
    ) -> None:
        insert = _insert_for(connection)
        statement = insert(settings_table)
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "value": statement.excluded.value,
                    "revision": statement.excluded.revision,
                    "updated_at": statement.excluded.updated_at,
                },
            ),
            [
                {
                    "key": key,
                    "value": DEFAULT_MARKER if new is None else new,
                    "revision": revision,
                    "updated_at": now,
                }
                for key, new in changed.items()
            ],
        )

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
        """Recorded changes, newest first; the next page starts ``before_id``
        the last entry's id (ids grow in commit order: writers are serialised).
        Filters: one ``key``, one ``actor`` (exact), ``since`` <= time < ``until``
        (aware datetimes), one ``revision``."""
        # the time as the driver gives it: one unreadable row must not break the page
        columns = [
            type_coerce(column, Text).label(column.name) if column.name == "changed_at" else column
            for column in history_table.c
        ]
        query = select(*columns).order_by(history_table.c.id.desc())
        if key is not None:
            query = query.where(history_table.c.key == key)
        if before_id is not None:
            query = query.where(history_table.c.id < before_id)
        if actor is not None:
            query = query.where(history_table.c.actor == actor)
        if since is not None:
            query = query.where(history_table.c.changed_at >= since)
        if until is not None:
            query = query.where(history_table.c.changed_at < until)
        if revision is not None:
            query = query.where(history_table.c.revision == revision)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query.limit(limit))).all()
        return [
            HistoryEntry(
                id=row.id,
                revision=row.revision,
                key=row.key,
                old_value=None if row.old_value is None else self._shown(row.key, row.old_value),
                new_value=self._shown(row.key, row.new_value),
                changed_at=_recorded_time(row.changed_at),
                actor=row.actor,
                reason=row.reason or "",
            )
            for row in rows
        ]

    async def kept_changes(self, revision: int) -> dict[str, tuple[PastValue, PastValue]]:
        """What ``revision`` changed: key to (before, after)."""
        async with self.engine.connect() as connection:
            kept = (
                await connection.execute(
                    select(kept_table).where(kept_table.c.revision == revision)
                )
            ).all()
            recorded = (
                await connection.execute(
                    select(
                        history_table.c.key, history_table.c.old_value, history_table.c.new_value
                    ).where(history_table.c.revision == revision)
                )
            ).all()
        changes = {
            row.key: (PastValue(row.key, row.old_text), PastValue(row.key, row.new_text))
            for row in kept
        }
        for row in recorded:
            if row.key not in changes:
                changes[row.key] = (
                    PastValue(row.key, row.old_value, kept=False),
                    PastValue(row.key, row.new_value, kept=False),
                )
        return changes

    async def values_at(self, revision: int, keys: Iterable[str]) -> dict[str, PastValue]:
        """What each of ``keys`` stored once ``revision`` was committed; a key
        never changed by then followed its default (text None)."""
        keys = list(keys)
        found = {key: PastValue(key, None) for key in keys}
        async with self.engine.connect() as connection:
            recorded = await connection.execute(_latest(history_table, "new_value", revision, keys))
            kept = await connection.execute(_latest(kept_table, "new_text", revision, keys))
            newest: dict[str, int] = {}
            for row in recorded:
                newest[row.key] = row.revision
                found[row.key] = PastValue(row.key, row.text, kept=False)
            for row in kept:
                if row.revision >= newest.get(row.key, -1):
                    found[row.key] = PastValue(row.key, row.text)
        return found

    def _shown(self, key: str, text: str) -> Any:
        """A recorded value as it may be shown: masked unless declared and not
        secret, :data:`UNREADABLE_MARK` if it cannot be read back."""
        try:
            value = load_json(text)
        except ValueError:
            return UNREADABLE_MARK
        return display_value(self.declarations, key, value)

    def _always_written(self, key: str, text: str | None) -> bool:
        """Whether writing ``text`` to ``key`` makes a revision even when it
        equals the stored value: so for a secret's value, since a write that
        made none would confirm a guessed secret to whoever may only write it.
        (A reset is not blind: the page and the API show who follows a default.)"""
        setting = self.declarations.get(key)
        return text is not None and setting is not None and setting.secret

    def _recorded(self, key: str, text: str | None) -> str | None:
        """What history keeps of a value: the marker for a secret (or a key
        not declared here), never the value itself."""
        # the one masking rule decides: does showing this key mask its value?
        if text is None or display_value(self.declarations, key, None) is None:
            return text
        return _SECRET_TEXT


def _latest(table: Table, column: str, revision: int, keys: list[str]) -> Any:
    """Each key's newest row of ``table`` at or before ``revision``: key, revision, text."""
    newest = (
        select(table.c.key, func.max(table.c.revision).label("revision"))
        .where(table.c.revision <= revision, table.c.key.in_(keys))
        .group_by(table.c.key)
        .subquery()
    )
    return select(table.c.key, table.c.revision, table.c[column].label("text")).join(
        newest, and_(table.c.key == newest.c.key, table.c.revision == newest.c.revision)
    )


def _add_missing_columns(connection: Connection) -> None:
    """Add the columns newer versions declare to tables an older version
    created (``create_all`` creates missing tables only)."""
    present = {column["name"] for column in inspect(connection).get_columns("waffle_history")}
    if "reason" not in present:
        connection.execute(text("ALTER TABLE waffle_history ADD COLUMN reason TEXT"))


def _utc(moment: datetime) -> datetime:
    """``moment`` made timezone-aware: SQLite hands back naive datetimes,
    which quart-waffle always writes in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _recorded_time(stored: object) -> datetime | None:
    """A history row's time, timezone-aware (SQLite hands back text, written
    in UTC); None when it cannot be read (a row written by hand)."""
    if isinstance(stored, str):
        try:
            stored = datetime.fromisoformat(stored)
        except ValueError:
            return None
    return _utc(stored) if isinstance(stored, datetime) else None


@contextlib.contextmanager
def unavailable_as_error() -> Iterator[None]:
    """Turn a failure to reach the database into :class:`StoreUnavailableError`."""
    try:
        yield
    except Exception as error:
        if isinstance(error, _UNAVAILABLE) or (
            isinstance(error, DBAPIError) and error.connection_invalidated
        ):
            # the first line only: SQLAlchemy appends the statement on the next ones
            summary = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise StoreUnavailableError(
                f"settings database unavailable: {type(error).__name__}: {summary}"
            ) from error
        raise
