"""The exceptions quart-waffle raises; pure, so every layer can share them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from click import ClickException


class WaffleError(Exception):
    """Base class of every quart-waffle error."""


class _SetupError(ClickException):
    """A mistake in the app's setup. Raised while ``quart`` loads the app (an
    extension created at import), it is printed as one line, exit status 1,
    instead of a traceback: the command cannot catch it itself."""


class DeclarationError(WaffleError, _SetupError, TypeError):
    """A setting declaration is malformed (raised at start-up, never on a request)."""


class ConfigurationError(WaffleError, _SetupError, ValueError):
    """A ``WAFFLE_*`` option has a value that cannot work (raised at start-up
    or when the app is registered, never on a request); the message names the
    option, the value and the fix."""


class UnknownSettingError(WaffleError, KeyError):
    """A key that no setting declares."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"{self.key}: unknown setting"


class InvalidValueError(WaffleError, ValueError):
    """One or more values do not fit their declarations.

    ``errors`` maps each offending key to the reason, e.g.
    ``{"MAX_ITEMS": "must be at most 100"}``; nothing was stored.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in self.errors.items()))


class ConflictError(WaffleError):
    """A write was based on a revision that is no longer current for its keys.

    ``current`` maps each conflicting key to its value now, and
    ``revisions`` to the revision that last changed it; nothing was stored.
    """

    def __init__(
        self,
        expected_revision: int,
        current: Mapping[str, Any],
        revisions: Mapping[str, int],
    ) -> None:
        self.expected_revision = expected_revision
        self.current = dict(current)
        self.revisions = dict(revisions)
        changed = ", ".join(f"{key} (changed at revision {rev})" for key, rev in revisions.items())
        super().__init__(f"changed since revision {expected_revision}: {changed}")


class StoreUnavailableError(WaffleError):
    """The settings database could not be reached; the worker keeps its last values."""
