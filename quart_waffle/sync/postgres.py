"""The PostgreSQL channel: LISTEN/NOTIFY on the store's own database, so
workers on every host converge with no extra server."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ConfigurationError
from .base import ChannelLostError, ListenerABC, NotifierABC
from .registry import ChannelKind, ChannelOptions

MAX_BATCH = 1000
"""Notifications one wait drains at most, so a flood cannot hold the runner."""

_LOST = None  # queued when the listening connection terminates


class PostgresListener(ListenerABC):
    """Notifications on one channel, through a dedicated asyncpg connection.

    Arguments:
        engine: The store's engine; it must be PostgreSQL.
        channel: The notification channel.
        timeout: Seconds allowed to connect, and for the liveness ping sent
            when no hint arrived for a whole wait.
    """

    name = "postgres"

    def __init__(self, engine: AsyncEngine, channel: str, *, timeout: float = 5.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: Any = None
        self._payloads: asyncio.Queue[str | None] = asyncio.Queue()

    async def connect(self) -> None:
        await self.close()
        self._payloads = asyncio.Queue()
        connection = await asyncpg.connect(self._dsn, timeout=self.timeout)
        self._connection = connection
        try:
            connection.add_termination_listener(self._on_termination)
            await connection.add_listener(self.channel, self._on_notification)
        except BaseException:
            await self.close()
            raise

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._payloads.put_nowait(payload)

    def _on_termination(self, _connection: Any) -> None:
        self._payloads.put_nowait(_LOST)

    async def wait(self, max_wait: float) -> list[bytes]:
        connection = self._connection
        if connection is None or connection.is_closed():
            raise ChannelLostError("postgres listener is not connected")
        try:
            async with asyncio.timeout(max_wait):
                first = await self._payloads.get()
        except TimeoutError:
            await self._ping(connection)
            return []
        payloads = [self._payload(first)]
        while not self._payloads.empty() and len(payloads) < MAX_BATCH:
            payloads.append(self._payload(self._payloads.get_nowait()))
        return payloads

    @staticmethod
    def _payload(payload: str | None) -> bytes:
        if payload is None:  # _LOST
            raise ChannelLostError("postgres listener connection lost")
        return payload.encode("utf-8", "replace")

    async def _ping(self, connection: Any) -> None:
        """Notice a connection that died silently (no notification comes then)."""
        try:
            await connection.execute("SELECT 1", timeout=self.timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            raise ChannelLostError(f"postgres listener unresponsive: {error}") from error

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await connection.close()
        except Exception:
            connection.terminate()


class PostgresNotifier(NotifierABC):
    """``pg_notify`` through the store's engine, so a worker can notify while
    its listener reconnects.

    Arguments:
        engine: The store's engine; it must be PostgreSQL.
        channel: The notification channel.
    """

    name = "postgres"
    max_payload = 7900  # NOTIFY takes under 8,000 bytes

    def __init__(self, engine: AsyncEngine, channel: str) -> None:
        self.engine = engine
        self.channel = channel

    async def send(self, payload: bytes) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel, "payload": payload.decode("utf-8", "replace")},
            )
            await connection.commit()

    async def close(self) -> None:
        return None  # the engine is the store's


def _postgres(engine: AsyncEngine | None) -> AsyncEngine:
    if engine is None or engine.dialect.name != "postgresql":
        store = "none" if engine is None else engine.dialect.name
        raise ConfigurationError(
            "WAFFLE_WATCHTYPE=postgres needs a PostgreSQL store (WAFFLE_DATABASE_URL="
            f"postgresql://...), but the store is {store}: use 'redis' or 'file'."
        )
    return engine


def _listener(options: ChannelOptions, engine: AsyncEngine | None) -> PostgresListener:
    return PostgresListener(_postgres(engine), options.postgres_channel, timeout=options.timeout)


def _notifier(options: ChannelOptions, engine: AsyncEngine | None) -> PostgresNotifier:
    return PostgresNotifier(_postgres(engine), options.postgres_channel)


KIND = ChannelKind(listener=_listener, notifier=_notifier)
