"""What a worker's sync does, told to whoever watches it (the metrics).

One hook interface, called by the runner and the extension: the base class
does nothing, so a worker without the ``metrics`` extra pays one empty method
call per event, and none on the reading path.
"""

from __future__ import annotations

from .message import Carried

ErrorKind = str
"""``"channel"`` (unreachable or lost), ``"catch_up"`` (the store failed),
``"notify"`` (a message could not be sent) or ``"apply"`` (a carried change
could not be applied)."""


class SyncObserver:
    """Told each sync event of one worker; every method does nothing here.

    Subclass it and pass it to :class:`SyncRunner`; methods must be quick and
    must not raise (they run inside the sync loop).
    """

    def served(self, revision: int) -> None:
        """The worker now serves ``revision`` (its snapshot was swapped)."""

    def heard(self, revision: int) -> None:
        """A message or the channel's witness announced ``revision``."""

    def applied_directly(self, change: Carried) -> None:
        """``change`` was applied from the values its message carried."""

    def caught_up(self) -> None:
        """A catch-up from the store finished."""

    def channel(self, up: bool) -> None:
        """The channel connected (``up``) or was lost."""

    def error(self, kind: ErrorKind) -> None:
        """Something failed; ``kind`` says what (see :data:`ErrorKind`)."""

    def closed(self) -> None:
        """The worker stopped syncing (it is shutting down)."""
