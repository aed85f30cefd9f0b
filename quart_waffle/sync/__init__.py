"""Notification channels: one module per channel, chosen by ``WAFFLE_WATCHTYPE``."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import WaffleConfig
from ..errors import DeclarationError
from .base import SyncChannelABC
from .none import NullChannel
from .runner import SyncHealth, SyncRunner

logger = logging.getLogger("quart_waffle.sync")

POSTGRES_CHANNEL = "waffleconf"
"""The LISTEN/NOTIFY channel; one per database, as the store is."""


def make_channel(config: WaffleConfig, engine: AsyncEngine) -> SyncChannelABC:
    """The channel ``config.watchtype`` names; backends are imported only when chosen.

    Raises :class:`DeclarationError` for ``postgres`` on a store that is not
    PostgreSQL. ``redis`` without the redis package falls back to ``file``.
    """
    if config.watchtype == "none":
        return NullChannel()
    if config.watchtype == "postgres":
        if engine.dialect.name != "postgresql":
            raise DeclarationError(
                "WAFFLE_WATCHTYPE=postgres needs a PostgreSQL store (WAFFLE_DATABASE_URL="
                f"postgresql://...), but the store is {engine.dialect.name}: use 'redis' or 'file'."
            )
        from .postgres import PostgresChannel

        return PostgresChannel(engine, POSTGRES_CHANNEL)
    if config.watchtype == "redis":
        try:
            from .redis import RedisChannel
        except ImportError as error:
            logger.error(
                "WAFFLE_WATCHTYPE=redis but the redis package is not installed (%s):"
                " FALLING BACK to the file watcher %s, which only reaches the workers of"
                " this host. Install quart-waffle[redis].",
                error,
                config.watcher_file,
            )
        else:
            return RedisChannel(
                config.redis_channel,
                url=config.redis_url,
                host=config.redis_host,
                port=config.redis_port,
            )
    from .file import FileChannel

    return FileChannel(config.watcher_file, config.watch_interval)


__all__ = ["NullChannel", "SyncChannelABC", "SyncHealth", "SyncRunner", "make_channel"]
