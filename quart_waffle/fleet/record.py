"""What one worker says about itself (:class:`PresenceRecord`), how a reader
judges it (:class:`WorkerView`), the whole fleet (:class:`Fleet`, the body of
``GET <prefix>/api/fleet``) and the answer of a write that waits
(:class:`Acknowledgement`).

Pure: no I/O, nothing of ours imported, so the admin, the CLI and the
metrics read these shapes without the backends.

The JSON of ``GET <prefix>/api/fleet`` (:meth:`Fleet.as_dict`)::

    {
      "generated_at": 1764093600.12,      # wall clock of the reader
      "head": 42,                         # newest revision any live worker serves, or the store's
      "bounds": {"heartbeat": 5.0, "lagging_after": 11.0, "behind_after": 11.0,
                 "gone_after": 51.0, "forget_after": 101.0},
      "counts": {"workers": 8, "hosts": 2, "ok": 7, "lagging": 1, "gone": 0},
      "workers": [                        # sorted by host, then pid
        {"id": "web-1/4242/9f3a1c0e", "host": "web-1", "pid": 4242,
         "started_at": 1764093000.0, "version": "2026.11.25",
         "revision": 42, "channel": "redis", "connected": true,
         "last_sync": 1764093598.7, "last_error": null,
         "heartbeat": 1764093599.9, "applied_at": 1764093412.3,
         "state": "ok", "reasons": [], "age": 0.2, "behind": 0}
      ]
    }
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

WorkerState = Literal["ok", "lagging", "gone"]
"""``ok``: heartbeating and serving the head (or behind it for less than the
bound); ``lagging``: alive but not advancing (heartbeat late, channel down,
or behind the head for too long); ``gone``: no heartbeat for ``gone_after``
seconds (then forgotten after ``forget_after``)."""

RECORD_VERSION = 1
"""The shape of a stored record; a reader skips records of a shape it does not know."""
MAX_WHOLE = 2**63 - 1
"""The largest pid or revision a record may hold (a revision is a 64-bit id)."""
CLOCK_SKEW = 5.0
"""Seconds a heartbeat may be ahead of the reader's clock before the reader
distrusts it: such a worker is judged by when the reader saw its heartbeat."""


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """What one worker publishes about itself. Never holds a secret: the
    channel is named, not its URL, and ``last_error`` is the one-line summary
    of :func:`quart_waffle.redaction.describe_error`.

    Times are wall-clock seconds (``time.time()``).
    """

    id: str
    """Stable for the worker's life and unique in the fleet: ``host/pid/token``."""
    host: str
    """``WAFFLE_HOST_ID``, default the machine's host name."""
    pid: int
    started_at: float
    version: str
    """``WAFFLE_VERSION``, else the supervisor's generation, else ``""``."""
    store: str
    """The identity of the settings database the worker serves (a random id,
    :meth:`SettingsStore.identity`): revisions compare only within one store."""
    revision: int
    """The revision served."""
    applied_at: float
    """When the worker started serving ``revision``."""
    channel: str
    connected: bool
    last_sync: float | None
    last_error: str | None
    heartbeat: float
    """When this record was written: the worker's event loop wrote it."""
    interval: float
    """The worker's heartbeat interval, so a reader judges it by its own clock."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (every field), as stored by the backends."""
        return {"v": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PresenceRecord | None:
        """A record read back; None when it is not one this version understands."""
        if data.get("v") != RECORD_VERSION:
            return None
        try:
            record = cls(
                id=str(data["id"]),
                host=str(data["host"]),
                pid=_whole(data["pid"]),
                started_at=float(data["started_at"]),
                version=str(data["version"]),
                store=str(data["store"]),
                revision=_whole(data["revision"]),
                applied_at=float(data["applied_at"]),
                channel=str(data["channel"]),
                connected=bool(data["connected"]),
                last_sync=None if data["last_sync"] is None else float(data["last_sync"]),
                last_error=None if data["last_error"] is None else str(data["last_error"]),
                heartbeat=float(data["heartbeat"]),
                interval=float(data["interval"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        finite = (record.started_at, record.applied_at, record.heartbeat, record.interval)
        return record if all(math.isfinite(value) for value in finite) else None

    def same_state(self, other: PresenceRecord | None) -> bool:
        """Whether ``other`` says the same apart from times: a worker
        writes at once when this changes, else only at its heartbeat."""
        if other is None:
            return False
        return (self.revision, self.connected, self.last_error, self.store) == (
            other.revision,
            other.connected,
            other.last_error,
            other.store,
        )

    def beat(self, now: float) -> PresenceRecord:
        """This record with its heartbeat at ``now``."""
        return replace(self, heartbeat=now)


def _whole(value: Any) -> int:
    """A pid or revision read back: a whole number from 0 to :data:`MAX_WHOLE`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    number = int(value)  # OverflowError for an infinite float (JSON's 1e400)
    if not 0 <= number <= MAX_WHOLE:
        raise ValueError(value)
    return number


@dataclass(frozen=True, slots=True)
class Bounds:
    """How a reader judges records, in seconds; derived from the heartbeat
    interval and ``check_interval`` (see :func:`bounds_for`)."""

    heartbeat: float
    lagging_after: float
    """A heartbeat older than this: the worker is lagging (loop blocked, paused)."""
    behind_after: float
    """Serving a revision below the head for longer than this: lagging."""
    gone_after: float
    """A heartbeat older than this: gone."""
    forget_after: float
    """A heartbeat older than this: the record is deleted."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bounds_for(heartbeat: float, check_interval: float) -> Bounds:
    """The bounds for a fleet heartbeating every ``heartbeat`` seconds: two
    missed heartbeats (plus a second of slack) is lagging, ten is gone,
    twenty is forgotten; behind the head for longer than two heartbeats or the
    periodic check, whichever is longer, is lagging."""
    return Bounds(
        heartbeat=heartbeat,
        lagging_after=2 * heartbeat + 1.0,
        behind_after=max(2 * heartbeat, check_interval) + 1.0,
        gone_after=10 * heartbeat + 1.0,
        forget_after=20 * heartbeat + 1.0,
    )


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker as a reader sees it at ``now``: its record, its state and why."""

    record: PresenceRecord
    state: WorkerState
    reasons: tuple[str, ...]
    age: float
    """Seconds since its last heartbeat."""
    behind: float
    """Seconds it has served a revision below the head (0: it serves the head)."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self.record)
        del data["interval"], data["store"]
        return {
            **data,
            "state": self.state,
            "reasons": list(self.reasons),
            "age": round(self.age, 3),
            "behind": round(self.behind, 3),
        }

    def describe(self) -> str:
        """``"web-1 pid 4242 serves revision 41 (lagging: heartbeat 12 s late)"``."""
        why = f" ({self.state}: {'; '.join(self.reasons)})" if self.reasons else ""
        record = self.record
        return f"{record.host} pid {record.pid} serves revision {record.revision}{why}"


def judge(
    records: Sequence[PresenceRecord],
    bounds: Bounds,
    now: float,
    head: int | None = None,
    head_at: float | None = None,
    seen: Mapping[str, float] | None = None,
) -> Fleet:
    """The fleet of ``records`` at ``now``: each (forgotten ones excluded) as a
    :class:`WorkerView`, sorted by host then pid. ``head``: the store's newest
    revision (a record claiming a newer one is lagging, and moves no one
    behind), else the newest any worker serves. A worker heartbeating more
    slowly than ``bounds`` says is judged by its own interval.

    A heartbeat more than :data:`CLOCK_SKEW` seconds ahead of ``now`` is
    lagging (clock skew), and aged from ``seen[record.id]``, when the reader
    first saw that heartbeat (``now`` if not given), so that it still goes
    stale when the worker stops.

    The time a worker has been behind is measured from the head's commit
    (``head_at``, from the store's history) or, when earlier or unknown, the
    moment the first worker served the head, so that no clock of the lagging
    worker is trusted, and a change no worker applied still counts.
    """
    seen = seen or {}

    def age_of(record: PresenceRecord) -> float:
        if record.heartbeat - now > CLOCK_SKEW:
            return max(0.0, now - seen.get(record.id, now))
        return max(0.0, now - record.heartbeat)

    kept = [record for record in records if age_of(record) <= bounds.forget_after]
    if head is None:
        head = max([record.revision for record in kept], default=-1)
    first_served = min(
        (record.applied_at for record in kept if record.revision == head), default=now
    )
    if head_at is not None:
        first_served = min(first_served, head_at)
    views: list[WorkerView] = []
    for record in sorted(kept, key=lambda record: (record.host, record.pid, record.id)):
        age = age_of(record)
        behind = max(0.0, now - first_served) if record.revision < head else 0.0
        reasons: list[str] = []
        state: WorkerState = "ok"
        if age > max(bounds.gone_after, 10 * record.interval + 1.0):
            state = "gone"
            reasons.append(f"no heartbeat for {age:.0f} s")
        else:
            if record.heartbeat - now > CLOCK_SKEW:
                reasons.append(f"clock skew: heartbeat {record.heartbeat - now:.0f} s ahead")
            if record.revision > head:
                reasons.append(f"claims revision {record.revision}, above the head {head}")
            if age > max(bounds.lagging_after, 2 * record.interval + 1.0):
                reasons.append(f"heartbeat {age:.1f} s old")
            if not record.connected:
                reasons.append(f"{record.channel} channel down")
            if behind > bounds.behind_after:
                reasons.append(f"{head - record.revision} revision(s) behind for {behind:.1f} s")
            if reasons:
                state = "lagging"
        views.append(WorkerView(record, state, tuple(reasons), age, behind))
    return Fleet(now, max(head, 0), bounds, tuple(views))


@dataclass(frozen=True, slots=True)
class Fleet:
    """Every worker one presence store knows, judged at ``generated_at``."""

    generated_at: float
    head: int
    bounds: Bounds
    workers: tuple[WorkerView, ...]

    @property
    def live(self) -> tuple[WorkerView, ...]:
        """The workers not gone."""
        return tuple(view for view in self.workers if view.state != "gone")

    @property
    def lagging(self) -> tuple[WorkerView, ...]:
        return tuple(view for view in self.workers if view.state == "lagging")

    def as_dict(self) -> dict[str, Any]:
        """The body of ``GET <prefix>/api/fleet`` (shape in the module docstring)."""
        states = [view.state for view in self.workers]
        return {
            "generated_at": self.generated_at,
            "head": self.head,
            "bounds": self.bounds.as_dict(),
            "counts": {
                "workers": len(self.workers),
                "hosts": len({view.record.host for view in self.workers}),
                "ok": states.count("ok"),
                "lagging": states.count("lagging"),
                "gone": states.count("gone"),
            },
            "workers": [view.as_dict() for view in self.workers],
        }


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What a write that waits (``waffle.update(..., wait=...)``) answers.

    ``complete`` is True when every worker live at the write serves
    ``revision`` or a newer one; otherwise ``pending`` names those that did
    not within the timeout (host, pid, the revision they serve and why).
    """

    revision: int
    expected: int
    """Workers live when the write committed (this one included)."""
    applied: int
    """Of those, how many serve ``revision`` or newer."""
    elapsed: float
    """Seconds from the commit until all applied, or until the timeout."""
    pending: tuple[WorkerView, ...] = field(default=())
    error: str | None = None
    """Why the wait could not tell (the presence store unreadable), else None."""

    @property
    def complete(self) -> bool:
        return not self.pending and self.error is None

    @property
    def text(self) -> str:
        """``"applied by 40 of 40 workers in 12 ms"``, then who has not."""
        took = f"{self.elapsed * 1000:.0f} ms"
        plural = "worker" if self.expected == 1 else "workers"
        line = f"applied by {self.applied} of {self.expected} {plural} in {took}"
        if self.pending:
            line += "; not yet: " + ", ".join(view.describe() for view in self.pending)
        if self.error is not None:
            line += f" ({self.error})"
        return line

    def as_dict(self) -> dict[str, Any]:
        """The ``acknowledgement`` member of an admin write's response."""
        return {
            "revision": self.revision,
            "complete": self.complete,
            "applied": self.applied,
            "expected": self.expected,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "pending": [view.as_dict() for view in self.pending],
            "error": self.error,
            "text": self.text,
        }
