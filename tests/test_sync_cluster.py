"""The redis channel on a Redis Cluster (``redis+cluster://``), against a real
three-node cluster of ``redis-server --cluster-enabled yes``: classic pub/sub
is broadcast to every node, the witness key is written to the node of its
slot, subscribers are counted on every node, and a ``hypercorn`` deployment
converges by message. A plain ``redis://`` URL naming one node is refused
with a message saying what to give instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import MovedError

from harness.cluster import RedisClusterGroup
from quart_waffle.sync import (
    ChannelLostError,
    ChannelOptions,
    Hint,
    encode_hint,
    open_listener,
    open_notifier,
)
from tests.conftest import require
from tests.sync_helpers import channel_name
from tests.test_sync_deploy import cli, converge, deployment_env, serving, updater

BY_MESSAGE = 3.0
"""Seconds within which every worker applies a change (the periodic check is a minute away)."""


@pytest.fixture(name="cluster")
async def _cluster(tmp_path: Path) -> AsyncIterator[RedisClusterGroup]:
    require("Redis")
    async with RedisClusterGroup(tmp_path / "cluster") as cluster:
        yield cluster


async def test_both_ends_work_on_a_cluster(cluster: RedisClusterGroup) -> None:
    channel = channel_name()
    options = ChannelOptions(redis_url=cluster.url, redis_channel=channel, timeout=2.0)
    listener = open_listener("redis", options)
    notifier = open_notifier("redis", options)
    plain = [Redis(host="127.0.0.1", port=port) for port in cluster.ports]
    subscriptions = [client.pubsub() for client in plain]
    try:
        await listener.connect()
        for subscription in subscriptions:  # one plain subscriber on every node
            await subscription.subscribe(channel)
            assert (await subscription.get_message(timeout=2.0) or {}).get("type") == "subscribe"
        assert await notifier.listeners() == 1 + len(cluster.ports)  # counted on every node

        payload = encode_hint(Hint(7, "writer"))
        await notifier.send(payload)
        assert await listener.wait(5.0) == [payload]
        for subscription in subscriptions:  # broadcast: every node delivers it
            message = await subscription.get_message(ignore_subscribe_messages=True, timeout=2.0)
            assert message is not None
            assert message["data"] == payload

        # the witness is on the node that holds its slot, and read back from it
        assert await notifier.head() == payload
        key = f"{channel}:head"
        holders = [await client.get(key) for client in plain if await holds(client, key)]
        assert holders == [payload]
    finally:
        await listener.close()
        await notifier.close()
        for subscription in subscriptions:
            await subscription.aclose()  # type: ignore[no-untyped-call]
        for client in plain:
            await client.aclose()


async def holds(client: Redis, key: str) -> bool:
    """Whether the node of ``client`` serves the slot of ``key`` (another
    answers MOVED)."""
    try:
        await client.exists(key)
    except MovedError:
        return False
    return True


async def test_a_plain_url_to_one_node_says_to_use_a_cluster_url(
    cluster: RedisClusterGroup,
) -> None:
    """Messages would flow through one node, but the witness key belongs to
    one slot's node: a notifier given ``redis://`` of another node fails with
    a message naming the URL to give, instead of a bare MOVED error."""
    channel = channel_name()
    for port in cluster.ports:
        node = Redis(host="127.0.0.1", port=port)
        holder = await holds(node, f"{channel}:head")
        await node.aclose()
        notifier = open_notifier(
            "redis",
            ChannelOptions(redis_url=f"redis://127.0.0.1:{port}/0", redis_channel=channel),
        )
        try:
            if holder:
                await notifier.send(b"1 writer")
            else:
                with pytest.raises(
                    ChannelLostError, match=r"Redis Cluster node.*redis\+cluster://"
                ):
                    await notifier.send(b"1 writer")
        finally:
            await notifier.close()


async def test_workers_converge_on_a_cluster(
    cluster: RedisClusterGroup, tmp_path: Path, sqlite_url: str
) -> None:
    env = deployment_env(
        "redis",
        sqlite_url,
        tmp_path,
        WAFFLE_REDIS_URL=cluster.url,
        WAFFLE_REDIS_CHANNEL=channel_name(),
        WAFFLE_CHECK_INTERVAL="60",
        WAFFLE_SYNC_KEY="cluster-test-key",
    )
    waffle = updater(env)
    async with (
        waffle.connected(),
        serving(env, tmp_path / "hypercorn.log", workers=2) as deployment,
    ):
        pids = await deployment.worker_pids()
        for number in range(1, 6):
            revision = await waffle.update({"MAX_ITEMS": number})
            await asyncio.sleep(0.02)
        await converge(deployment, pids, revision, BY_MESSAGE, MAX_ITEMS=5)
        # a command counts the workers' subscriptions across the nodes, and reaches them
        await cli(env, "set", "MAX_ITEMS=42", "--actor", "cluster-test")
        await converge(deployment, pids, revision + 1, BY_MESSAGE, MAX_ITEMS=42)
