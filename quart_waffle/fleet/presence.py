"""Where workers keep their presence records: one backend per channel, chosen
by the channel's name as :mod:`quart_waffle.sync.registry` chooses channels.

- ``redis``: one hash ``<redis_channel>:fleet`` (field: worker id), no database cost.
- ``file``: one small file per worker in ``<watcher_file>.fleet/``.
- ``postgres`` and ``none``: the table ``waffle_presence`` in the settings database.

A backend module is imported only when chosen, so the core never imports
redis unless asked to.
"""

from __future__ import annotations

import importlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ConfigurationError
from ..sync.registry import ChannelOptions
from .record import RECORD_VERSION, PresenceRecord

logger = logging.getLogger("quart_waffle.fleet")


class PresenceABC(ABC):
    """Keeps the presence records of one fleet.

    Writers call :meth:`publish` (their own record) and :meth:`remove` (at
    shutdown); readers call :meth:`read`, which also deletes the records
    heartbeating no more for ``forget_after`` seconds. ``writes`` counts the
    store writes made through this object, for the benchmark and the metrics.
    """

    name: str = ""
    heartbeat: float = 5.0
    """The default heartbeat interval (``WAFFLE_HEARTBEAT_INTERVAL`` wins):
    a backend whose writes cost a database transaction heartbeats slowly."""

    def __init__(self) -> None:
        self.writes = 0

    @abstractmethod
    async def publish(self, record: PresenceRecord) -> None:
        """Store ``record``, replacing the worker's previous one; raise on failure."""

    @abstractmethod
    async def remove(self, worker_id: str) -> None:
        """Delete one worker's record (a clean shutdown)."""

    @abstractmethod
    async def read(self, *, forget_after: float, now: float) -> list[PresenceRecord]:
        """Every record, after deleting those with a heartbeat older than
        ``now - forget_after``; records this version cannot read are skipped."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing
        """Release connections; the backend may be used again."""


def encode(record: PresenceRecord) -> str:
    return json.dumps(record.as_dict(), separators=(",", ":"))


class _Undecodable:
    """Records skipped because they cannot be read (not JSON, a field out of
    range such as a pid of 1e400): counted, and logged once per process, so
    one bad record hides neither the fleet nor the log."""

    count = 0

    @classmethod
    def skip(cls) -> None:
        cls.count += 1
        if cls.count == 1:
            logger.warning(
                "presence: a record that cannot be read was skipped (another version"
                " or a forged one); further ones are counted, not logged"
            )


def undecodable_records() -> int:
    """How many presence records this process skipped as unreadable."""
    return _Undecodable.count


class RecordEncoder:
    """:func:`encode` for the records of one worker, cheaply: what stays the
    same for its whole life (id, host, pid, start, version, store, channel,
    interval) is serialised once, and each write adds only the few fields
    that move (no ``dataclasses.asdict``, no dict: a heartbeat is a hot path
    at 1,000 workers). Decodes to the same record as :func:`encode`."""

    def __init__(self) -> None:
        self._static: tuple[object, ...] = ()
        self._prefix = ""

    def __call__(self, record: PresenceRecord) -> str:
        static = (
            record.id,
            record.host,
            record.pid,
            record.started_at,
            record.version,
            record.store,
            record.channel,
            record.interval,
        )
        if static != self._static:
            head = {key: value for key, value in record.as_dict().items() if key not in _MOVING}
            self._static, self._prefix = static, json.dumps(head, separators=(",", ":"))[:-1]
        error = "null" if record.last_error is None else json.dumps(record.last_error)
        last_sync = "null" if record.last_sync is None else repr(float(record.last_sync))
        return (
            f'{self._prefix},"revision":{int(record.revision)}'
            f',"applied_at":{float(record.applied_at)!r}'
            f',"connected":{"true" if record.connected else "false"}'
            f',"last_sync":{last_sync},"last_error":{error}'
            f',"heartbeat":{float(record.heartbeat)!r}}}'
        )


_MOVING = frozenset(("revision", "applied_at", "connected", "last_sync", "last_error", "heartbeat"))


def decode(text: str | bytes) -> PresenceRecord | None:
    """The record stored as ``text``; None (counted) when it is not one, or
    of a shape this version does not know (not counted)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        _Undecodable.skip()
        return None
    record = PresenceRecord.from_dict(data)
    if record is None and data.get("v") == RECORD_VERSION:
        _Undecodable.skip()
    return record


PresenceFactory = Callable[[ChannelOptions, AsyncEngine], PresenceABC]


@dataclass(frozen=True)
class PresenceKind:
    """How to build one kind of presence backend; a backend module exposes one as ``KIND``."""

    build: PresenceFactory


_KINDS: dict[str, PresenceKind | str] = {}


def register_presence(channel: str, kind: PresenceKind | str) -> None:
    """Keep presence for channel ``channel`` with ``kind``, or the dotted name
    of a module whose ``KIND`` it is (imported on first use).

    Example: ``register_presence("nats", "myproject.nats_presence")``.
    """
    _KINDS[channel] = kind


for _channel, _module in (("redis", "redis"), ("file", "files"), ("postgres", "table")):
    register_presence(_channel, f"{__package__}.{_module}")
register_presence("none", f"{__package__}.table")


def open_presence(channel: str, options: ChannelOptions, engine: AsyncEngine) -> PresenceABC:
    """The presence backend that goes with ``channel``; a channel with no
    backend of its own keeps presence in the settings database."""
    kind = _KINDS.get(channel, f"{__package__}.table")
    if isinstance(kind, str):
        loaded = getattr(importlib.import_module(kind), "KIND", None)
        if not isinstance(loaded, PresenceKind):
            raise ConfigurationError(f"presence module {kind} has no PresenceKind named KIND")
        kind = loaded
    return kind.build(options, engine)


def ids(records: Iterable[PresenceRecord]) -> set[str]:
    return {record.id for record in records}
