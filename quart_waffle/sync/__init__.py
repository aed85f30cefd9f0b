"""Notification channels: one module per channel, chosen by ``WAFFLE_WATCHTYPE``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import WaffleConfig
from .base import SyncChannelABC
from .none import NullChannel
from .runner import SyncHealth, SyncRunner


def make_channel(config: WaffleConfig, engine: AsyncEngine) -> SyncChannelABC:
    """The channel ``config.watchtype`` names; backends are imported only when chosen."""
    del engine  # the postgres channel will listen on the store's own database
    if config.watchtype == "none":
        return NullChannel()
    raise NotImplementedError(f"WAFFLE_WATCHTYPE {config.watchtype!r} is not available yet")


__all__ = ["NullChannel", "SyncChannelABC", "SyncHealth", "SyncRunner", "make_channel"]
