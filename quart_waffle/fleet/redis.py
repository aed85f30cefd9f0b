"""Presence in Redis: one hash ``<redis_channel>:fleet``, one field per
worker, refreshed every few seconds at no database cost. The key expires
when no worker writes for ``forget_after``; a reader deletes the fields of
workers forgotten meanwhile."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from ..sync.redis import redis_connection
from ..sync.registry import ChannelOptions
from .presence import PresenceABC, PresenceKind, RecordEncoder, decode
from .record import PresenceRecord

KEY_TTL = 3600
"""Seconds the hash outlives its last expiry refresh."""
EXPIRE_EVERY = 300.0
"""Seconds between two refreshes of the hash's expiry by one worker: the
other writes are one ``HSET`` each, without a pipeline."""


class RedisPresence(PresenceABC):
    name = "redis"
    heartbeat = 5.0

    def __init__(self, options: ChannelOptions) -> None:
        super().__init__()
        self.key = f"{options.redis_channel}:fleet"
        # one server, the master the Sentinels name, or a cluster, as the channel
        self._connection = redis_connection(
            options, socket_timeout=options.timeout, retry=Retry(NoBackoff(), 0)
        )
        self._client = self._connection.client
        self._encode = RecordEncoder()
        self._expire_at = -1.0  # monotonic time of the next expiry refresh

    async def publish(self, record: PresenceRecord) -> None:
        text = self._encode(record)
        now = time.monotonic()
        if now < self._expire_at:
            await self._client.hset(self.key, record.id, text)
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(self.key, record.id, text)
                pipe.expire(self.key, KEY_TTL)
                await pipe.execute()
            self._expire_at = now + EXPIRE_EVERY
        self.writes += 1

    async def remove(self, worker_id: str) -> None:
        await self._client.hdel(self.key, worker_id)

    async def read(self, *, forget_after: float, now: float) -> list[PresenceRecord]:
        fields = await self._client.hgetall(self.key)
        records: list[PresenceRecord] = []
        forgotten: list[Any] = []
        for field, text in fields.items():
            record = decode(text)
            if record is not None and now - record.heartbeat > forget_after:
                forgotten.append(field)
            elif record is not None:
                records.append(record)
        if forgotten:
            await self._client.hdel(self.key, *forgotten)
        return records

    async def close(self) -> None:
        await self._connection.aclose()


def _build(options: ChannelOptions, _engine: AsyncEngine) -> PresenceABC:
    return RedisPresence(options)


KIND = PresenceKind(_build)
