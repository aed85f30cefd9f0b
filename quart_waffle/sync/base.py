"""The interfaces every channel implements: a notifier sends payloads, a
listener receives them. Both are transports only: what a payload means, and
which ones a worker skips (its own), is decided by the runner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class ChannelLostError(ConnectionError):
    """The channel can no longer deliver hints; the runner reconnects and catches up."""


class NotifierABC(ABC):
    """Sends payloads to every listener of the channel; subscribes to nothing.

    Connects on first use, so a script that only writes opens no listener.
    """

    name: str = ""
    where: str = ""
    """The channel's address for messages, credentials masked."""
    max_payload: int = 0
    """Bytes one payload may have: a change whose message would be longer
    is sent as a bare hint (0: bare hints only)."""

    @abstractmethod
    async def send(self, payload: bytes) -> None:
        """Deliver ``payload`` to every listener; raise if that fails."""

    async def head(self) -> bytes | None:
        """The first line of the last payload sent on the channel, if the
        channel keeps it (a cheap witness of the latest revision, read by the
        periodic check instead of the store): ``b""`` when nothing was sent
        yet, None when the channel keeps no such line."""
        return None

    async def listeners(self) -> int | None:
        """How many listeners the channel has now (a command refuses a write
        no worker would hear of), or None when the channel cannot tell; raise
        if it cannot be reached."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the notifier may be used again."""


class ListenerABC(ABC):
    """Receives the payloads sent on the channel, from its own event loop."""

    name: str = ""

    @abstractmethod
    async def connect(self) -> None:
        """Subscribe; return once subscribed, raise if the channel is unreachable."""

    @abstractmethod
    async def wait(self, max_wait: float) -> list[bytes]:
        """Wait up to ``max_wait`` seconds for payloads.

        Return every payload already waiting once the first arrives (so a
        burst is one wake-up), at most a bounded batch, or an empty list when
        the time ran out. Raise :class:`ChannelLostError` if the channel is lost.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections and files; the listener may be connected again."""


@dataclass(frozen=True)
class Channel:
    """A worker's two ends of one channel."""

    listener: ListenerABC
    notifier: NotifierABC

    @property
    def name(self) -> str:
        """The channel's registered name (``file``, ``redis``, ...)."""
        return self.listener.name

    async def close(self) -> None:
        """Close both ends."""
        await self.listener.close()
        await self.notifier.close()
