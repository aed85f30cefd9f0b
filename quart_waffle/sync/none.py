"""The channel for a single process: no messages, only the periodic check."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from .base import ListenerABC, NotifierABC
from .registry import ChannelKind, ChannelOptions


class NullListener(ListenerABC):
    """Hears nothing: waits out the time."""

    name = "none"

    async def connect(self) -> None:
        return None

    async def wait(self, max_wait: float) -> list[bytes]:
        await asyncio.sleep(max_wait)
        return []

    async def close(self) -> None:
        return None


class NullNotifier(NotifierABC):
    """Sends nothing."""

    name = "none"

    async def send(self, payload: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


def _listener(_options: ChannelOptions, _engine: AsyncEngine | None) -> NullListener:
    return NullListener()


def _notifier(_options: ChannelOptions, _engine: AsyncEngine | None) -> NullNotifier:
    return NullNotifier()


KIND = ChannelKind(listener=_listener, notifier=_notifier)
