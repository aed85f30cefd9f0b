"""The interface every notification channel implements."""

from __future__ import annotations

from abc import ABC, abstractmethod


class SyncChannelABC(ABC):
    """How workers tell each other "revision R exists".

    A message is a hint, never the data: receivers catch up from the store.
    One channel object belongs to one worker and is used from its event loop.
    """

    name: str = ""

    @abstractmethod
    async def connect(self) -> None:
        """Subscribe; return once subscribed, raise if the channel is unreachable."""

    @abstractmethod
    async def wait(self, max_wait: float) -> int | None:
        """Wait up to ``max_wait`` seconds for hints from other workers.

        Return the highest revision hinted (draining every hint already
        waiting, so bursts coalesce), or None when the time ran out. Raise if
        the connection is lost.
        """

    @abstractmethod
    async def notify(self, revision: int) -> None:
        """Tell every other worker that ``revision`` is committed."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and files; the channel may be connected again."""
