"""The Redis channel: hints over pub/sub, for workers on any number of hosts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import ChannelLostError, SyncChannelABC, decode_hint, encode_hint


class RedisChannel(SyncChannelABC):
    """Hints published on one Redis pub/sub channel.

    The listener and the publisher use the same connection settings. redis-py
    would silently reconnect and resubscribe a pub/sub connection, hiding the
    hints lost meanwhile; here retries are off so a lost connection reaches
    the runner, which reconnects and catches up from the store.

    Arguments:
        channel: The pub/sub channel (``WAFFLE_REDIS_CHANNEL``).
        url: ``WAFFLE_REDIS_URL``; when None, ``host`` and ``port`` are used.
        timeout: Seconds allowed to connect, to subscribe and to publish a
            hint: a server that accepts but never replies cannot hold up an
            update for longer. Also the time a liveness PING, sent on the
            subscription after a wait with no message, may go unanswered.
    """

    name = "redis"

    def __init__(
        self,
        channel: str,
        *,
        url: str | None = None,
        host: str = "localhost",
        port: int = 6379,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.channel = channel
        self.timeout = timeout
        options: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
        }
        if url:
            self._connect_options = {"url": url, **options}
        else:
            self._connect_options = {"host": host, "port": port, **options}
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._ping_sent: float | None = None  # loop time of the PING awaiting its PONG

    def _new_client(self) -> Redis:
        options = dict(self._connect_options)
        url = options.pop("url", None)
        return Redis.from_url(url, **options) if url else Redis(**options)

    async def connect(self) -> None:
        await self.close()
        client = self._new_client()
        pubsub = client.pubsub()
        self._client, self._pubsub = client, pubsub
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.subscribe(self.channel)
                while True:  # bounded by the timeout above
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "subscribe":
                        return
        except BaseException:
            await self.close()
            raise

    async def wait(self, max_wait: float) -> int | None:
        pubsub = self._pubsub
        if pubsub is None:
            raise ChannelLostError("redis channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        hinted: int | None = None
        timeout = max_wait
        while True:
            message = await self._next_message(pubsub, timeout)
            if message is not None and message["type"] == "pong":
                self._ping_sent = None
            revision = self._hint(message)
            if revision is not None:
                hinted = revision if hinted is None else max(hinted, revision)
                timeout = 0.0  # drain what is already waiting, then return
                continue
            remaining = deadline - loop.time()
            if message is None and hinted is not None:
                return hinted
            if message is None and remaining <= 0:
                await self._check_alive(pubsub)
                return None
            timeout = 0.0 if hinted is not None else max(0.0, remaining)

    async def _next_message(self, pubsub: PubSub, wait: float) -> dict[str, Any] | None:
        try:
            message: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=wait
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise ChannelLostError(f"redis connection lost: {error}") from error
        return message

    def _hint(self, message: dict[str, Any] | None) -> int | None:
        """The revision another worker hinted in ``message``, if it is such a hint."""
        if message is None or message["type"] != "message":
            return None  # a PONG, or a subscription notice
        hint = decode_hint(message["data"])
        return None if hint is None or hint[1] == self.sender else hint[0]

    async def _check_alive(self, pubsub: PubSub) -> None:
        """Notice a subscription that died silently (a dropped NAT entry, a
        paused server): no message comes then. After an idle wait, send a
        PING; its PONG is read by the waits that follow, and a PING left
        unanswered for ``timeout`` seconds means the channel is lost. Never
        blocks on the server, so the periodic check is never delayed."""
        now = asyncio.get_running_loop().time()
        if self._ping_sent is not None:
            if now - self._ping_sent > self.timeout:
                raise ChannelLostError(
                    f"redis subscription unresponsive: no PONG within {self.timeout} s"
                )
            return
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.ping()
        except TimeoutError:  # before OSError: the built-in TimeoutError is one
            raise ChannelLostError("redis subscription unresponsive: PING not sent") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise ChannelLostError(f"redis connection lost: {error}") from error
        self._ping_sent = now

    async def notify(self, revision: int) -> None:
        if self._client is None:
            self._client = self._new_client()
        client, payload = self._client, encode_hint(revision, self.sender)
        try:
            async with asyncio.timeout(self.timeout):  # both attempts, together
                try:
                    await client.publish(self.channel, payload)
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    # a pooled connection that died with a restarted server: once more, fresh
                    await client.publish(self.channel, payload)
        except TimeoutError:
            raise ChannelLostError(
                f"redis did not answer a publish within {self.timeout} s"
            ) from None

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self._ping_sent = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
