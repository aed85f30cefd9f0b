"""The Redis channel: hints over pub/sub, for workers on any number of hosts.

One server (``redis://``), the master that Redis Sentinel names
(``redis+sentinel://``, looked up again at every connection, so both ends follow
a failover), or a Redis Cluster (``redis+cluster://``): see
:mod:`quart_waffle.sync.redis_address` for the URL forms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import AskError, ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..redaction import describe_error, mask_credentials
from .base import ChannelLostError, ListenerABC, NotifierABC
from .redis_address import ClusterAddress, SentinelAddress, parse_redis_url
from .registry import ChannelKind, ChannelOptions

T = TypeVar("T")

MAX_BATCH = 1000
"""Messages one wait drains at most, so a flood cannot hold the runner."""

_LOST = (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError)
_CLUSTER_REPLIES = (AskError, ClusterDownError)
"""Replies of a Redis Cluster node to a plain client (MOVED is an AskError)
that wrote a key it does not hold."""


@dataclass
class RedisConnection:
    """A client of the channel's server, with the Sentinel manager that finds
    its master, if any; ``aclose()`` closes both."""

    client: Redis | RedisCluster
    sentinel: Sentinel | None = None

    async def aclose(self) -> None:
        """Close the client and the Sentinel manager; never raises."""
        with contextlib.suppress(Exception):
            await self.client.aclose()
        if self.sentinel is not None:
            with contextlib.suppress(Exception):
                await self.sentinel.aclose()


def redis_connection(options: ChannelOptions, **settings: Any) -> RedisConnection:
    """A client of the server ``options`` name (``redis_url``, else
    ``redis_host``/``redis_port``): one server, the master the Sentinels name
    (asked again at every new connection) or a cluster. It connects on its
    first command. ``settings`` are redis-py connection options, e.g.
    ``retry``; for a cluster, only its time limit (``options.timeout``) applies.

    Example (another feature keeping its keys beside the channel)::

        connection = redis_connection(options, socket_timeout=options.timeout)
        try:
            await connection.client.hset(f"{options.redis_channel}:fleet", "w1", "...")
        finally:
            await connection.aclose()
    """
    timeout = options.timeout
    url = options.redis_url
    address = parse_redis_url(url) if url else None
    if isinstance(address, SentinelAddress):
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(address.sentinels),
            sentinel_kwargs={
                **settings,
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                "username": address.sentinel_username,
                "password": address.sentinel_password,
            },
        )
        client = sentinel.master_for(
            address.service,
            db=address.db,
            username=address.username,
            password=address.password,
            **settings,
        )
        return RedisConnection(client, sentinel)
    if isinstance(address, ClusterAddress):
        # the cluster client follows MOVED replies and failovers itself,
        # within the end's time limit
        return RedisConnection(
            RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
                username=address.username,
                password=address.password,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
        )
    if address is not None:
        return RedisConnection(Redis.from_url(address, **settings))
    return RedisConnection(Redis(host=options.redis_host, port=options.redis_port, **settings))


class _RedisEnd:
    """Connection settings shared by both ends.

    redis-py would silently reconnect and resubscribe a pub/sub connection,
    hiding the hints lost meanwhile; here retries are off so a lost
    connection reaches the runner, which reconnects and catches up. Behind
    Sentinel, every new connection asks the Sentinels for the master first.
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
        self._server = ChannelOptions(
            redis_url=url, redis_host=host, redis_port=port, redis_channel=channel, timeout=timeout
        )
        address = parse_redis_url(url) if url else None
        self._service = address.service if isinstance(address, SentinelAddress) else None

    def _connect(self) -> RedisConnection:
        return redis_connection(
            self._server,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )


class RedisListener(_RedisEnd, ListenerABC):
    """Subscribed to one Redis pub/sub channel.

    Behind Sentinel, the subscription is on the master the Sentinels named
    when it connected; while idle, it asks them again every ``timeout``
    seconds and counts as lost once they name another (a master that handed
    over keeps its clients for several seconds before the Sentinels demote
    it), so the runner subscribes on the new master and catches up.

    Arguments:
        channel: The pub/sub channel (``WAFFLE_REDIS_CHANNEL``).
        url: ``WAFFLE_REDIS_URL``; when None, ``host`` and ``port`` are used.
        timeout: Seconds allowed to connect and subscribe, and the time a
            liveness PING, sent after a wait with no message, may go unanswered.
    """

    def __init__(self, channel: str, **connection: Any) -> None:
        super().__init__(channel, **connection)
        self._connection: RedisConnection | None = None
        self._pubsub: PubSub | None = None
        self._ping_sent: float | None = None  # loop time of the PING awaiting its PONG
        self._master: tuple[str, int] | None = None  # behind Sentinel: where it subscribed
        self._master_checked = 0.0  # loop time the Sentinels were last asked

    async def connect(self) -> None:
        await self.close()
        connection = self._connect()
        self._connection = connection
        try:
            async with asyncio.timeout(self.timeout):
                client = connection.client
                if isinstance(client, RedisCluster):
                    # classic pub/sub is broadcast to every node: any node will do
                    await client.initialize()
                pubsub = self._pubsub = client.pubsub()
                await pubsub.subscribe(self.channel)
                while True:  # bounded by the timeout above
                    message = await pubsub.get_message(timeout=self.timeout)
                    if message is not None and message["type"] == "subscribe":
                        break
        except BaseException as error:
            await self.close()
            if isinstance(error, (*_LOST, TimeoutError)):
                raise ChannelLostError(
                    f"cannot subscribe at {self.where}: {describe_error(error)}"
                ) from error
            raise
        if connection.sentinel is not None and pubsub.connection is not None:
            self._master = (str(pubsub.connection.host), int(pubsub.connection.port))
            self._master_checked = asyncio.get_running_loop().time()

    async def _check_master(self) -> None:
        """Behind Sentinel, when due: lost if the Sentinels name another master
        than the one subscribed to. Sentinels that cannot answer change nothing."""
        connection, service = self._connection, self._service
        now = asyncio.get_running_loop().time()
        if self._master is None or connection is None or connection.sentinel is None:
            return
        if service is None or now < self._master_checked + self.timeout:
            return
        self._master_checked = now
        try:
            async with asyncio.timeout(self.timeout):
                host, port = await connection.sentinel.discover_master(service)
        except (*_LOST, TimeoutError):
            return
        if (str(host), int(port)) != self._master:
            was = "{}:{}".format(*self._master)
            raise ChannelLostError(
                f"the Sentinels at {self.where} name a new master {host}:{port} (was {was})"
            )

    async def wait(self, max_wait: float) -> list[bytes]:
        pubsub = self._pubsub
        if pubsub is None:
            raise ChannelLostError("redis channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        if self._master is not None:  # back in time to ask the Sentinels
            deadline = min(deadline, self._master_checked + self.timeout)
        payloads: list[bytes] = []
        timeout = max(0.0, deadline - loop.time())
        while len(payloads) < MAX_BATCH:
            message = await self._next_message(pubsub, timeout)
            if message is None:
                if payloads:
                    return payloads
                if loop.time() >= deadline:
                    await self._check_alive(pubsub)
                    await self._check_master()
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
        pubsub, connection = self._pubsub, self._connection
        self._pubsub = self._connection = None
        self._ping_sent = self._master = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        if connection is not None:
            await connection.aclose()


class RedisNotifier(_RedisEnd, NotifierABC):
    """Publishes on one Redis pub/sub channel; takes the listener's arguments.

    With each payload, its first line (the hint) is stored under the key
    ``<channel>:head``, in the same round trip: the channel's witness of the
    latest revision. Behind Sentinel, each publish first asks the Sentinels
    for the master (a write is rare; a witness read does not ask). A publish
    is retried once on a fresh connection (a pooled connection dies with a
    restarted server), and both attempts together get
    ``timeout`` seconds: a server that accepts but never replies cannot hold
    up an update for longer.
    """

    max_payload = 64 * 1024

    def __init__(self, channel: str, **connection: Any) -> None:
        super().__init__(channel, **connection)
        self._connection: RedisConnection | None = None

    async def send(self, payload: bytes) -> None:
        head = payload.partition(b"\n")[0]
        await self._run("publish", lambda client: self._publish(client, head, payload), follow=True)

    async def _publish(self, client: Redis | RedisCluster, head: bytes, payload: bytes) -> None:
        if isinstance(client, RedisCluster):
            # the key lives on its slot's node, the message goes to every
            # node from any: two commands, as a cluster pipeline keeps to one
            await client.set(f"{self.channel}:head", head)
            await client.publish(self.channel, payload)
            return
        async with client.pipeline(transaction=False) as pipeline:
            pipeline.set(f"{self.channel}:head", head)
            pipeline.publish(self.channel, payload)
            await pipeline.execute()

    async def head(self) -> bytes | None:
        value = await self._run("read the head", lambda client: client.get(f"{self.channel}:head"))
        return value if isinstance(value, bytes) else b""

    async def listeners(self) -> int | None:
        counts = await self._run("count the subscribers", self._numsub)
        return sum(int(count) for _, count in counts)

    async def _numsub(self, client: Redis | RedisCluster) -> list[tuple[bytes | str, int]]:
        if isinstance(client, RedisCluster):  # each node counts its own subscribers
            counts: list[tuple[bytes | str, int]] = await client.pubsub_numsub(
                self.channel, target_nodes=RedisCluster.ALL_NODES
            )
            return counts
        return await client.pubsub_numsub(self.channel)

    async def _run(
        self,
        what: str,
        operation: Callable[[Redis | RedisCluster], Awaitable[T]],
        *,
        follow: bool = False,
    ) -> T:
        if self._connection is None:
            self._connection = self._connect()
        client = self._connection.client
        pool = client.connection_pool if isinstance(client, Redis) else None
        try:
            async with asyncio.timeout(self.timeout):  # both attempts, together
                if follow and isinstance(pool, SentinelConnectionPool):
                    # a master that handed over still answers for a while:
                    # ask the Sentinels, which closes idle connections to it
                    await pool.get_master_address()  # type: ignore[no-untyped-call]
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
        except _CLUSTER_REPLIES as error:
            raise ChannelLostError(
                f"cannot {what} at {self.where}: it is a Redis Cluster node"
                f" ({describe_error(error)}); use redis+cluster://host:port,..."
            ) from error

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()


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
