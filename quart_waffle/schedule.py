"""Scheduled and temporary changes: "set X at 18:00", "set MAINTENANCE=true
until 06:00, then put back what was there" (docs/schedule.md).

Entries live in the ``waffle_schedule`` table. Every worker looks for due
entries from its sync task (at start, at each periodic check, and at the next
due time it knows of); the store decides which worker runs a step: the step's
write claims the row with a conditional UPDATE (``WHERE state = 'pending'``)
inside the transaction that writes the new revision, so a step is written
once however many workers and hosts try it at the same moment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .actor import checked_actor, checked_reason
from .errors import ConflictError, InvalidValueError, WaffleError
from .kinds import load_json, parse_datetime
from .limits import MAX_ACTOR_LENGTH, TIME_RANGE, in_utc
from .settings import display_value
from .store import WriteGuard, schedule_table, unavailable_as_error

if TYPE_CHECKING:
    from .extension import QuartWaffle

logger = logging.getLogger("quart_waffle.schedule")

ACTIVE = ("pending", "applied")
"""States with a step still due: ``pending`` (the change, at ``at``) and
``applied`` (a temporary change whose end, ``until``, is due)."""
STATES = ("pending", "applied", "done", "reverted", "conflict", "failed", "cancelled")
"""Every state of an entry; see docs/schedule.md."""
DUE_BATCH = 50
"""Due entries one look runs; more are run at once by the next look."""

_table = schedule_table.c


class NotCancellableError(WaffleError):
    """The scheduled change does not exist (``state`` None) or has no step
    left to cancel (``state`` says why)."""

    def __init__(self, entry_id: int, state: str | None) -> None:
        self.entry_id = entry_id
        self.state = state
        reason = "no such scheduled change" if state is None else f"it is {state}"
        super().__init__(f"cannot cancel scheduled change {entry_id}: {reason}")


@dataclass(frozen=True)
class ScheduledChange:
    """One scheduled change as every surface shows it; ``values`` are shown
    as history shows them (secrets masked). ``detail`` says why an entry
    failed, was skipped (conflict) or cancelled."""

    id: int
    state: str
    at: datetime
    until: datetime | None
    values: dict[str, Any]
    force: bool
    actor: str
    reason: str
    created_at: datetime
    applied_revision: int | None
    reverted_revision: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (times in ISO 8601 with their offset)."""
        return {
            "id": self.id,
            "state": self.state,
            "at": self.at.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "values": self.values,
            "force": self.force,
            "actor": self.actor,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "applied_revision": self.applied_revision,
            "reverted_revision": self.reverted_revision,
            "detail": self.detail,
        }


def parse_time(text: object, name: str) -> datetime:
    """An ISO 8601 time with its offset (``2026-11-25T18:00:00+01:00``, or
    ``Z``), as UTC; :class:`InvalidValueError` naming ``name`` otherwise."""
    if isinstance(text, datetime):
        moment = text
    elif isinstance(text, str):
        try:
            moment = parse_datetime(text.strip())
        except ValueError:
            raise InvalidValueError(
                {name: "must be an ISO 8601 time with its offset, like 2026-11-25T18:00:00+00:00"}
            ) from None
    else:
        raise InvalidValueError({name: f"must be a time, got {type(text).__name__}"})
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValueError({name: "must say its offset (like +00:00 or Z)"})
    utc = in_utc(moment)
    if utc is None:
        raise InvalidValueError({name: TIME_RANGE})
    return utc


async def schedule(
    waffle: QuartWaffle,
    values: Mapping[str, Any],
    *,
    at: datetime,
    until: datetime | None = None,
    reason: str = "",
    actor: str = "",
    force: bool = False,
) -> ScheduledChange:
    """Store a change of ``values`` due at ``at`` (and put back at ``until``);
    every value, time, actor and reason is checked first and nothing is
    stored when one is wrong (:class:`InvalidValueError` naming it)."""
    actor, reason = checked_actor(actor), checked_reason(reason)
    encoded = waffle._encode(values)
    start = parse_time(at, "at")
    end = None if until is None else parse_time(until, "until")
    now = datetime.now(UTC)
    if start < now:
        raise InvalidValueError({"at": "is in the past"})
    if end is not None and end <= start:
        raise InvalidValueError({"until": "must be after at"})
    if not isinstance(force, bool):
        raise InvalidValueError({"force": "must be true or false"})
    row = {
        "state": "pending",
        "due_at": start,
        "at": start,
        "until": end,
        "changes": json.dumps(encoded),
        "force": force,
        "actor": actor,
        "reason": reason or None,
        "created_at": now,
    }
    with unavailable_as_error():
        async with waffle._connected().store.engine.begin() as connection:
            entry_id = (
                await connection.execute(schedule_table.insert().values(**row).returning(_table.id))
            ).scalar_one()
            found = (
                await connection.execute(select(schedule_table).where(_table.id == entry_id))
            ).one()
    return _entry(waffle, found)


async def scheduled(waffle: QuartWaffle, *, limit: int = 100) -> list[ScheduledChange]:
    """The newest ``limit`` scheduled changes, active or not, newest first."""
    query = select(schedule_table).order_by(_table.id.desc()).limit(limit)
    with unavailable_as_error():
        async with waffle._connected().store.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
    return [_entry(waffle, row) for row in rows]


async def cancel(waffle: QuartWaffle, entry_id: int, *, actor: str = "") -> ScheduledChange:
    """Cancel a pending change, or the end of an applied temporary change
    (its value then stays); :class:`NotCancellableError` when there is no
    step left."""
    actor = checked_actor(actor)
    detail = f"cancelled by {actor}" if actor else "cancelled"
    with unavailable_as_error():
        async with waffle._connected().store.engine.begin() as connection:
            done = await connection.execute(
                update(schedule_table)
                .where(_table.id == entry_id, _table.state.in_(ACTIVE))
                .values(state="cancelled", detail=detail)
            )
            row = (
                await connection.execute(select(schedule_table).where(_table.id == entry_id))
            ).one_or_none()
    if row is None or done.rowcount != 1:
        raise NotCancellableError(entry_id, None if row is None else row.state)
    logger.info("scheduled change %d %s", entry_id, detail)
    return _entry(waffle, row)


async def run_due(waffle: QuartWaffle) -> float | None:
    """Run every step due now; return the seconds until the next one known
    (None: none). The sync task calls it (:data:`quart_waffle.sync.runner.Tick`)."""
    store = waffle._connected().store
    now = datetime.now(UTC)
    query = (
        select(_table.id, _table.due_at)
        .where(_table.state.in_(ACTIVE))
        .order_by(_table.due_at, _table.id)
        .limit(DUE_BATCH)
    )
    with unavailable_as_error():
        async with store.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
    due = [row.id for row in rows if _utc(row.due_at) <= now]
    for entry_id in due:
        await _step(waffle, entry_id)
    later = [_utc(row.due_at) for row in rows if _utc(row.due_at) > now]
    if len(due) == DUE_BATCH:
        return 0.0
    return (later[0] - datetime.now(UTC)).total_seconds() if later else None


class _Claimed(Exception):
    """Another worker ran this step first: the write is abandoned."""


def _claim(entry_id: int, state: str, values: Mapping[str, Any]) -> WriteGuard:
    """A write guard moving the entry from ``state`` with ``values`` (a
    callable receives the revision) in the write's own transaction."""

    async def guard(connection: AsyncConnection, revision: int) -> None:
        resolved = {name: v(revision) if callable(v) else v for name, v in values.items()}
        result = await connection.execute(
            update(schedule_table)
            .where(_table.id == entry_id, _table.state == state)
            .values(**resolved)
        )
        if result.rowcount != 1:
            raise _Claimed

    return guard


async def _finish(
    waffle: QuartWaffle, entry_id: int, state: str, values: Mapping[str, Any]
) -> bool:
    """Move the entry from ``state`` with ``values`` with no write; whether it did."""
    async with waffle._connected().store.engine.begin() as connection:
        result = await connection.execute(
            update(schedule_table)
            .where(_table.id == entry_id, _table.state == state)
            .values(**values)
        )
    return bool(result.rowcount == 1)


async def _step(waffle: QuartWaffle, entry_id: int) -> None:
    """Run the step of one entry due now: its change, or its end."""
    async with waffle._connected().store.engine.connect() as connection:
        row = (
            await connection.execute(select(schedule_table).where(_table.id == entry_id))
        ).one_or_none()
    if row is None or row.state not in ACTIVE:
        return
    by = f" by {row.actor}" if row.actor else ""
    actor = checked_actor(_printable(f"schedule:{row.id}{by}"))[:MAX_ACTOR_LENGTH]
    if row.state == "pending":
        await _apply(waffle, row, actor)
    else:
        await _revert(waffle, row, actor)


async def _apply(waffle: QuartWaffle, row: Any, actor: str) -> None:
    try:
        encoded = _checked(waffle, json.loads(row.changes))
    except InvalidValueError as error:
        await _fail(waffle, row, "pending", f"not applied: {error}")
        return
    temporary = row.until is not None
    guard = _claim(
        row.id,
        "pending",
        {
            "state": "applied" if temporary else "done",
            "due_at": row.until if temporary else row.due_at,
            "applied_revision": lambda revision: revision,
        },
    )
    reason = row.reason or ""
    try:
        revision = await waffle._write(encoded, None, actor, reason, guard=guard)
    except _Claimed:
        return
    # nothing written (every value already as asked): nothing to put back either
    if await _finish(waffle, row.id, "pending", {"state": "done", "detail": "already as asked"}):
        logger.info("scheduled change %d: every value already as asked", row.id)
    else:
        logger.info("scheduled change %d applied (revision %d)", row.id, revision)


async def _revert(waffle: QuartWaffle, row: Any, actor: str) -> None:
    from .rollback import _encoded

    store = waffle._connected().store
    with unavailable_as_error():
        changes = await store.kept_changes(row.applied_revision)
    targets = {key: before for key, (before, _after) in changes.items()}
    try:
        encoded = _encoded(waffle, targets, f"before revision {row.applied_revision}")
    except InvalidValueError as error:
        await _fail(waffle, row, "applied", f"not put back: {error}")
        return
    guard = _claim(
        row.id, "applied", {"state": "reverted", "reverted_revision": lambda revision: revision}
    )
    reason = f"end of scheduled change {row.id}" + (f": {row.reason}" if row.reason else "")
    expected = None if row.force else row.applied_revision
    try:
        if encoded:
            await waffle._write(encoded, expected, actor, reason, guard=guard)
    except _Claimed:
        return
    except ConflictError as error:
        detail = f"not put back: {error}; the newer value stays"
        if await _finish(waffle, row.id, "applied", {"state": "conflict", "detail": detail}):
            logger.warning("scheduled change %d %s", row.id, detail)
        return
    await _finish(waffle, row.id, "applied", {"state": "reverted", "detail": "already as before"})


async def _fail(waffle: QuartWaffle, row: Any, state: str, detail: str) -> None:
    if await _finish(waffle, row.id, state, {"state": "failed", "detail": detail}):
        logger.warning("scheduled change %d %s", row.id, detail)


def _checked(waffle: QuartWaffle, changes: Mapping[str, str]) -> dict[str, str | None]:
    """The stored texts checked against today's declarations."""
    errors: dict[str, str] = {}
    encoded: dict[str, str | None] = {}
    for key, text in changes.items():
        setting = waffle.declarations.get(key)
        if setting is None:
            errors[key] = "no longer declared"
            continue
        try:
            encoded[key] = setting.encode(setting.decode(text))
        except InvalidValueError as error:
            errors[key] = f"no longer fits: {error.errors.get(key, error)}"
    if errors:
        raise InvalidValueError(errors)
    return encoded


def _entry(waffle: QuartWaffle, row: Any) -> ScheduledChange:
    values: dict[str, Any] = {}
    for key, text in json.loads(row.changes).items():
        try:
            value = load_json(text)
        except ValueError:
            value = None
        values[key] = display_value(waffle.declarations, key, value)
    return ScheduledChange(
        id=row.id,
        state=row.state,
        at=_utc(row.at),
        until=None if row.until is None else _utc(row.until),
        values=values,
        force=bool(row.force),
        actor=row.actor,
        reason=row.reason or "",
        created_at=_utc(row.created_at),
        applied_revision=row.applied_revision,
        reverted_revision=row.reverted_revision,
        detail=row.detail or "",
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes, which this module writes in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _printable(text: str) -> str:
    from .actor import escape_controls

    return escape_controls(text)
