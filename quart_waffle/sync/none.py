"""The channel for a single process: no messages, only the periodic check."""

from __future__ import annotations

import asyncio

from .base import SyncChannelABC


class NullChannel(SyncChannelABC):
    """Sends nothing and hears nothing."""

    name = "none"

    async def connect(self) -> None:
        return None

    async def wait(self, max_wait: float) -> int | None:
        await asyncio.sleep(max_wait)
        return None

    async def notify(self, revision: int) -> None:
        return None

    async def close(self) -> None:
        return None
