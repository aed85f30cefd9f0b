"""Notification channels (one module each, imported only when chosen) and the
runner that keeps a worker current."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from .base import Channel, ChannelLostError, ListenerABC, NotifierABC
from .message import (
    Carried,
    Hint,
    decode_hint,
    decode_message,
    derive_key,
    encode_hint,
    encode_message,
)
from .registry import (
    ChannelKind,
    ChannelOptions,
    open_channel,
    open_listener,
    open_notifier,
    register_channel,
)
from .runner import SyncHealth, SyncRunner

if TYPE_CHECKING:
    from ..config import WaffleConfig


def channel_options(config: WaffleConfig) -> ChannelOptions:
    """The channel's part of an app's resolved options."""
    return ChannelOptions(
        watcher_file=config.watcher_file,
        watch_interval=config.watch_interval,
        redis_url=config.redis_url,
        redis_host=config.redis_host,
        redis_port=config.redis_port,
        redis_channel=config.redis_channel,
    )


def make_channel(config: WaffleConfig, engine: AsyncEngine) -> Channel:
    """Both ends of the channel ``config.watchtype`` names, for a worker.

    Same as ``open_channel(config.watchtype, channel_options(config), engine)``.
    """
    return open_channel(config.watchtype, channel_options(config), engine)


__all__ = [
    "Carried",
    "Channel",
    "ChannelKind",
    "ChannelLostError",
    "ChannelOptions",
    "Hint",
    "ListenerABC",
    "NotifierABC",
    "SyncHealth",
    "SyncRunner",
    "channel_options",
    "decode_hint",
    "decode_message",
    "derive_key",
    "encode_hint",
    "encode_message",
    "make_channel",
    "open_channel",
    "open_listener",
    "open_notifier",
    "register_channel",
]
