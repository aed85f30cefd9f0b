"""The Redis channel: hints over pub/sub, for workers on any number of hosts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..redaction import describe_error, mask_credentials
from .base import ChannelLostError, ListenerABC, NotifierABC
from .registry import ChannelKind, ChannelOptions

T = TypeVar("T")

MAX_BATCH = 1000
"""Messages one wait drains at most, so a flood cannot hold the runner."""

_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class _RedisEnd:
    """Connection settings shared by both ends.

    redis-py would silently reconnect and resubscribe a pub/sub connection,
    hiding the hints lost meanwhile; here retries are off so a lost
    connection reaches the runner, which reconnects and catches up.
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
        self.channel = channel
        self.timeout = timeout
        self.where = mask_credentials(url) if url else f"redis://{host}:{port}"
        self._url = url
        self._options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        if not url:
            self._options |= {"host": host, "port": port}

    def _new_client(self) -> Redis:
        if self._url:
            return Redis.from_url(self._url, **self._options)
        return Redis(**self._options)


class RedisListener(_RedisEnd, ListenerABC):
    """Subscribed to one Redis pub/sub channel.

    Arguments:
        channel: The pub/sub channel (``WAFFLE_REDIS_CHANNEL``).
        url: ``WAFFLE_REDIS_URL``; when None, ``host`` and ``port`` are used.
        timeout: Seconds allowed to connect and subscribe, and the time a
            liveness PING, sent after a wait with no message, may go unanswered.
    """

    def __init__(self, channel: str, **connection: Any) -> None:
        super().__init__(channel, **connection)
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._ping_sent: float | None = None  # loop time of the PING awaiting its PONG

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
        except BaseException as error:
            await self.close()
            if isinstance(error, (*_LOST, TimeoutError)):
                raise ChannelLostError(
                    f"cannot subscribe at {self.where}: {describe_error(error)}"
                ) from error
            raise

    async def wait(self, max_wait: float) -> list[bytes]:
        pubsub = self._pubsub
        if pubsub is None:
            raise ChannelLostError("redis channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        payloads: list[bytes] = []
        timeout = max_wait
        while len(payloads) < MAX_BATCH:
            message = await self._next_message(pubsub, timeout)
            if message is None:
                if payloads:
                    return payloads
                if loop.time() >= deadline:
                    await self._check_alive(pubsub)
                    return []
            elif message["type"] == "pong":  # never a hint
                self._ping_sent = None
            elif message["type"] == "message":
                data = message["data"]
                payloads.append(data if isinstance(data, bytes) else str(data).encode())
            # then drain what is already waiting, or wait out the time left
            timeout = 0.0 if payloads else max(0.0, deadline - loop.time())
        return payloads

    async def _next_message(self, pubsub: PubSub, wait: float) -> dict[str, Any] | None:
        try:
            message: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=wait
            )
        except _LOST as error:
            raise ChannelLostError(f"redis connection lost: {error}") from error
        return message

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
        except _LOST as error:
            raise ChannelLostError(f"redis connection lost: {error}") from error
        self._ping_sent = now

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


class RedisNotifier(_RedisEnd, NotifierABC):
    """Publishes on one Redis pub/sub channel; takes the listener's arguments.

    With each payload, its first line (the hint) is stored under the key
    ``<channel>:head``, in the same round trip: the channel's witness of the
    latest revision. A publish is retried once on a fresh connection (a pooled
    connection dies with a restarted server), and both attempts together get
    ``timeout`` seconds: a server that accepts but never replies cannot hold
    up an update for longer.
    """

    max_payload = 64 * 1024

    def __init__(self, channel: str, **connection: Any) -> None:
        super().__init__(channel, **connection)
        self._client: Redis | None = None

    async def send(self, payload: bytes) -> None:
        head = payload.partition(b"\n")[0]
        await self._run("publish", lambda client: self._publish(client, head, payload))

    async def _publish(self, client: Redis, head: bytes, payload: bytes) -> None:
        async with client.pipeline(transaction=False) as pipeline:
            pipeline.set(f"{self.channel}:head", head)
            pipeline.publish(self.channel, payload)
            await pipeline.execute()

    async def head(self) -> bytes | None:
        value = await self._run("read the head", lambda client: client.get(f"{self.channel}:head"))
        return value if isinstance(value, bytes) else b""

    async def listeners(self) -> int | None:
        counts = await self._run(
            "count the subscribers", lambda client: client.pubsub_numsub(self.channel)
        )
        return sum(int(count) for _, count in counts)

    async def _run(self, what: str, operation: Callable[[Redis], Awaitable[T]]) -> T:
        if self._client is None:
            self._client = self._new_client()
        client = self._client
        try:
            async with asyncio.timeout(self.timeout):  # both attempts, together
                try:
                    return await operation(client)
                except _LOST:
                    return await operation(client)
        except TimeoutError:
            raise ChannelLostError(
                f"redis at {self.where} did not answer ({what}) within {self.timeout} s"
            ) from None
        except _LOST as error:
            raise ChannelLostError(
                f"cannot {what} at {self.where}: {describe_error(error)}"
            ) from error

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


def _connection(options: ChannelOptions) -> dict[str, Any]:
    return {
        "url": options.redis_url,
        "host": options.redis_host,
        "port": options.redis_port,
        "timeout": options.timeout,
    }


def _listener(options: ChannelOptions, _engine: AsyncEngine | None) -> RedisListener:
    return RedisListener(options.redis_channel, **_connection(options))


def _notifier(options: ChannelOptions, _engine: AsyncEngine | None) -> RedisNotifier:
    return RedisNotifier(options.redis_channel, **_connection(options))


KIND = ChannelKind(listener=_listener, notifier=_notifier)
