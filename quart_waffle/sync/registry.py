"""Channels by name, built from plain options: no app, no app config.

A channel module is imported only when its name is chosen, so the core never
imports redis or asyncpg unless asked to.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ConfigurationError
from .base import Channel, ListenerABC, NotifierABC

logger = logging.getLogger("quart_waffle.sync")


@dataclass(frozen=True)
class ChannelOptions:
    """What any channel may need; each reads only its own fields.

    The field names are those of the ``WAFFLE_*`` options, so
    ``ChannelOptions(watcher_file=config.watcher_file, ...)`` is a copy.
    """

    watcher_file: str = "waffle.revision"
    watch_interval: float = 0.05
    redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_channel: str = "waffleconf"
    postgres_channel: str = "waffleconf"
    timeout: float = 5.0
    """Seconds any one network or file operation of a channel may take."""


ListenerFactory = Callable[[ChannelOptions, AsyncEngine | None], ListenerABC]
NotifierFactory = Callable[[ChannelOptions, AsyncEngine | None], NotifierABC]


@dataclass(frozen=True)
class ChannelKind:
    """How to build both ends of one kind of channel; a channel module
    exposes one as ``KIND``."""

    listener: ListenerFactory
    notifier: NotifierFactory


_KINDS: dict[str, ChannelKind | str] = {}


def register_channel(name: str, kind: ChannelKind | str) -> None:
    """Make ``name`` a channel: ``kind`` itself, or the dotted name of a module
    whose ``KIND`` it is (imported on first use).

    Example: ``register_channel("nats", "myproject.nats_channel")``.
    """
    _KINDS[name] = kind


for _name in ("none", "file", "redis", "postgres"):
    register_channel(_name, f"{__package__}.{_name}")


def channel_kind(name: str) -> ChannelKind:
    """The kind registered as ``name``, its module imported now.

    A channel whose package is not installed falls back to ``file``, with an
    error logged: the workers of this host still hear of every change.
    """
    try:
        kind = _KINDS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown channel {name!r}: choose one of {', '.join(sorted(_KINDS))}"
        ) from None
    if isinstance(kind, ChannelKind):
        return kind
    try:
        module = importlib.import_module(kind)
    except ImportError as error:
        if name == "file":
            raise
        logger.error(
            "the %s channel cannot be used (%s): FALLING BACK to the file channel, which only"
            " reaches the workers of this host. Install quart-waffle[%s].",
            name,
            error,
            name,
        )
        return channel_kind("file")
    loaded = getattr(module, "KIND", None)
    if not isinstance(loaded, ChannelKind):
        raise ConfigurationError(f"channel module {kind} has no ChannelKind named KIND")
    return loaded


def open_listener(
    name: str, options: ChannelOptions, engine: AsyncEngine | None = None
) -> ListenerABC:
    """A listener of channel ``name``, not yet connected."""
    return channel_kind(name).listener(options, engine)


def open_notifier(
    name: str, options: ChannelOptions, engine: AsyncEngine | None = None
) -> NotifierABC:
    """A notifier of channel ``name``; it connects when it first sends.

    Example (a deploy script announcing a revision it wrote)::

        notifier = open_notifier("redis", ChannelOptions(redis_url="redis://cache:6379/0"))
        try:
            await notifier.send(encode_hint(Hint(revision, "deploy-script")))
        finally:
            await notifier.close()
    """
    return channel_kind(name).notifier(options, engine)


def open_channel(name: str, options: ChannelOptions, engine: AsyncEngine | None = None) -> Channel:
    """Both ends of channel ``name``, for a worker."""
    kind = channel_kind(name)
    return Channel(kind.listener(options, engine), kind.notifier(options, engine))
