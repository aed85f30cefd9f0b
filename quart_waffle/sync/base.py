"""The interface every notification channel implements, and the hint format."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod


class ChannelLostError(ConnectionError):
    """The channel can no longer deliver hints; the runner reconnects and catches up."""


class SyncChannelABC(ABC):
    """How workers tell each other "revision R exists".

    A message is a hint, never the data: receivers catch up from the store.
    One channel object belongs to one worker and is used from its event loop;
    ``sender`` is a random id so that a worker ignores its own hints.
    """

    name: str = ""

    def __init__(self) -> None:
        self.sender = secrets.token_hex(8)

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


def encode_hint(revision: int, sender: str) -> str:
    """The text of a hint: ``"<revision> <sender>"``."""
    return f"{revision} {sender}"


def decode_hint(text: str | bytes) -> tuple[int, str] | None:
    """``(revision, sender)`` from a hint's text, or None when it is not one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    revision, _, sender = text.strip().partition(" ")
    try:
        return int(revision), sender
    except ValueError:
        return None
