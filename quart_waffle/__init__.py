"""Runtime-editable settings for Quart, kept in step across every worker and host."""

from __future__ import annotations

from .errors import (
    ConflictError,
    DeclarationError,
    InvalidValueError,
    StoreUnavailableError,
    UnknownSettingError,
    WaffleError,
)
from .extension import Authorizer, QuartWaffle
from .settings import Setting
from .signals import settings_changed
from .snapshot import Snapshot
from .store import HistoryEntry, metadata
from .sync import SyncHealth

__all__ = [
    "Authorizer",
    "ConflictError",
    "DeclarationError",
    "HistoryEntry",
    "InvalidValueError",
    "QuartWaffle",
    "Setting",
    "Snapshot",
    "StoreUnavailableError",
    "SyncHealth",
    "UnknownSettingError",
    "WaffleError",
    "metadata",
    "settings_changed",
]
