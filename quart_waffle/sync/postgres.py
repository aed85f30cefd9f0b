"""The PostgreSQL channel: LISTEN/NOTIFY on the store's own database, so
workers on every host converge with no extra server."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .base import ChannelLostError, SyncChannelABC, decode_hint, encode_hint

_LOST = None  # queued when the listening connection terminates


class PostgresChannel(SyncChannelABC):
    """Hints as PostgreSQL notifications.

    A dedicated asyncpg connection listens; hints are sent through the store's
    engine, so a worker can notify while its listener reconnects.

    Arguments:
        engine: The store's engine; it must be PostgreSQL.
        channel: The notification channel.
        timeout: Seconds allowed to connect, and for the liveness ping sent
            when no hint arrived for a whole wait.
    """

    name = "postgres"

    def __init__(self, engine: AsyncEngine, channel: str, *, timeout: float = 5.0) -> None:
        super().__init__()
        self.engine = engine
        self.channel = channel
        self.timeout = timeout
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: Any = None
        self._hints: asyncio.Queue[str | None] = asyncio.Queue()

    async def connect(self) -> None:
        await self.close()
        self._hints = asyncio.Queue()
        connection = await asyncpg.connect(self._dsn, timeout=self.timeout)
        self._connection = connection
        try:
            connection.add_termination_listener(self._on_termination)
            await connection.add_listener(self.channel, self._on_notification)
        except BaseException:
            await self.close()
            raise

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._hints.put_nowait(payload)

    def _on_termination(self, _connection: Any) -> None:
        self._hints.put_nowait(_LOST)

    async def wait(self, max_wait: float) -> int | None:
        connection = self._connection
        if connection is None or connection.is_closed():
            raise ChannelLostError("postgres listener is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        hinted: int | None = None
        while hinted is None:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    payload = await self._hints.get()
            except TimeoutError:
                await self._ping(connection)
                return None
            hinted = self._hint(payload)
        while not self._hints.empty():
            revision = self._hint(self._hints.get_nowait())
            if revision is not None:
                hinted = max(hinted, revision)
        return hinted

    def _hint(self, payload: str | None) -> int | None:
        if payload is _LOST:
            raise ChannelLostError("postgres listener connection lost")
        hint = decode_hint(payload)
        return None if hint is None or hint[1] == self.sender else hint[0]

    async def _ping(self, connection: Any) -> None:
        """Notice a connection that died silently (no notification comes then)."""
        try:
            await connection.execute("SELECT 1", timeout=self.timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            raise ChannelLostError(f"postgres listener unresponsive: {error}") from error

    async def notify(self, revision: int) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel, "payload": encode_hint(revision, self.sender)},
            )
            await connection.commit()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await connection.close()
        except Exception:
            connection.terminate()
