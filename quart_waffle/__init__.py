"""Runtime-editable settings for Quart, kept in step across every worker and host.

Names are imported on first use, so ``quart-waffle serve``/``reload`` and the
supervisor's workers do not pay for SQLAlchemy unless the app uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        ConfigurationError,
        ConflictError,
        DeclarationError,
        InvalidValueError,
        StoreUnavailableError,
        UnknownSettingError,
        WaffleError,
    )
    from .extension import Authorizer, QuartWaffle
    from .fleet import Acknowledgement, Fleet
    from .schedule import NotCancellableError, ScheduledChange
    from .settings import Setting
    from .signals import settings_changed
    from .snapshot import Snapshot
    from .store import HistoryEntry, metadata
    from .sync import SyncHealth

_MODULE_OF = {
    "Acknowledgement": ".fleet",
    "Authorizer": ".extension",
    "ConfigurationError": ".errors",
    "ConflictError": ".errors",
    "DeclarationError": ".errors",
    "Fleet": ".fleet",
    "HistoryEntry": ".store",
    "InvalidValueError": ".errors",
    "NotCancellableError": ".schedule",
    "QuartWaffle": ".extension",
    "ScheduledChange": ".schedule",
    "Setting": ".settings",
    "Snapshot": ".snapshot",
    "StoreUnavailableError": ".errors",
    "SyncHealth": ".sync",
    "UnknownSettingError": ".errors",
    "WaffleError": ".errors",
    "metadata": ".store",
    "settings_changed": ".signals",
}
__all__ = [
    "Acknowledgement",
    "Authorizer",
    "ConfigurationError",
    "ConflictError",
    "DeclarationError",
    "Fleet",
    "HistoryEntry",
    "InvalidValueError",
    "NotCancellableError",
    "QuartWaffle",
    "ScheduledChange",
    "Setting",
    "Snapshot",
    "StoreUnavailableError",
    "SyncHealth",
    "UnknownSettingError",
    "WaffleError",
    "metadata",
    "settings_changed",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and nothing else

    def __getattr__(name: str) -> Any:
        if name not in _MODULE_OF:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
        globals()[name] = value
        return value
