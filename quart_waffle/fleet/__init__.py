"""The fleet: every worker reports what it serves (presence), a reader judges
the reports (ok, lagging, gone), and a write can wait until every live worker
has applied it. See docs/fleet.md."""

from __future__ import annotations

from .member import FleetMember
from .presence import PresenceABC, open_presence, register_presence
from .record import (
    Acknowledgement,
    Bounds,
    Fleet,
    PresenceRecord,
    WorkerState,
    WorkerView,
    bounds_for,
    judge,
)

__all__ = [
    "Acknowledgement",
    "Bounds",
    "Fleet",
    "FleetMember",
    "PresenceABC",
    "PresenceRecord",
    "WorkerState",
    "WorkerView",
    "bounds_for",
    "judge",
    "open_presence",
    "register_presence",
]
