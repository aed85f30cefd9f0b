"""The redis channel behind Redis Sentinel (``redis+sentinel://``), against real
``redis-server`` masters, replicas and Sentinels: both ends follow a failover
(a handover and a crash of the master) to the new master, and every worker of a
real ``hypercorn`` deployment converges on the last of a stream of updates,
nothing lost. The periodic check is a minute away, so only the channel (its
messages and the catch-up after a reconnection) can meet the bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from harness.sentinel import SentinelGroup
from quart_waffle.config import WaffleConfig
from quart_waffle.errors import ConfigurationError
from quart_waffle.redaction import describe_error
from quart_waffle.sync import (
    ChannelLostError,
    ChannelOptions,
    Hint,
    ListenerABC,
    encode_hint,
    open_listener,
    open_notifier,
)
from tests.conftest import require
from tests.sync_helpers import channel_name
from tests.test_sync_deploy import cli, converge, deployment_env, serving, updater

BY_MESSAGE = 3.0
"""Seconds within which every worker applies a change when the channel works
(the periodic check is a minute away)."""
AFTER_FAILOVER = 20.0
"""Seconds for every worker to converge once the new master is named: the
listener's reconnection backoff (up to 5 s) plus a catch-up, on a loaded machine."""
SILENT = "60"


@pytest.fixture(name="group")
async def _group(tmp_path: Path) -> AsyncIterator[SentinelGroup]:
    require("Redis")
    async with SentinelGroup(tmp_path / "redis") as group:
        yield group


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://s1:26379,s2:26379", "name the Sentinels' service"),
        ("redis+sentinel://s1:26379/svc/zero", "the database must be a number"),
        ("redis+sentinel://s1:99999/svc/0", "Port out of range"),
        ("redis+sentinel://s1:26379,/svc/0", "is not host:port"),
        ("redis+sentinel://s1/svc/0?db=2", "unknown option 'db'"),
        ("redis+cluster://n1:7000/3", "a cluster URL names its nodes only"),
    ],
)
def test_a_bad_sentinel_url_is_refused_naming_the_option(url: str, reason: str) -> None:
    from quart import Quart

    with pytest.raises(ConfigurationError, match=f"^WAFFLE_REDIS_URL=.*: .*{reason}"):
        WaffleConfig.resolve(Quart(__name__), {"redis_url": url}, environ={})


def test_a_good_sentinel_url_is_accepted() -> None:
    from quart import Quart

    url = "redis+sentinel://:pw@s1,s2:26380/mymaster/2?sentinel_password=x"
    config = WaffleConfig.resolve(Quart(__name__), {"redis_url": url}, environ={})
    assert config.redis_url == url


async def test_sentinel_credentials_are_masked_in_errors_and_refusals() -> None:
    """Both the master's password and the Sentinels' never show: not in a
    refused option, not where the channel says it is, not in its errors."""
    from quart import Quart

    url = "redis+sentinel://app:m4ster@127.0.0.1:1/svc/0?sentinel_password=s3ntinel"
    with pytest.raises(ConfigurationError) as refused:
        WaffleConfig.resolve(Quart(__name__), {"redis_url": url + "&x=1"}, environ={})
    listener = open_listener("redis", ChannelOptions(redis_url=url, timeout=1.0))
    notifier = open_notifier("redis", ChannelOptions(redis_url=url, timeout=1.0))
    with pytest.raises(ChannelLostError) as lost:
        await listener.connect()
    with pytest.raises(ChannelLostError) as unsent:
        await notifier.send(b"1 test")
    await notifier.close()
    texts = [str(refused.value), notifier.where, str(lost.value), str(unsent.value)]
    texts += [describe_error(lost.value), describe_error(unsent.value)]
    for text in texts:
        assert "m4ster" not in text, text
        assert "s3ntinel" not in text, text
    assert notifier.where.startswith("redis+sentinel://***@127.0.0.1:1/svc/0?sentinel_password=***")
    assert "svc" in str(lost.value)  # names what it could not find


async def head_on(port: int, channel: str) -> bytes | None:
    client = Redis(host="127.0.0.1", port=port)
    try:
        value = await client.get(f"{channel}:head")
        return value if isinstance(value, bytes) else None
    finally:
        await client.aclose()


async def until_subscribed(port: int, channel: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (found := await subscribers_on(port, channel)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} of {count} listeners on port {port} after {within} s")
        await asyncio.sleep(0.1)


async def subscribers_on(port: int, channel: str) -> int:
    client = Redis(host="127.0.0.1", port=port)
    try:
        counts = await client.pubsub_numsub(channel)
        return sum(int(count) for _, count in counts)
    finally:
        await client.aclose()


async def test_both_ends_follow_the_master(group: SentinelGroup) -> None:
    """After a handover and after a crash: the listener, once reconnected, is
    subscribed on the new master, and the notifier publishes there and sets the
    witness there."""
    channel = channel_name()
    options = ChannelOptions(redis_url=group.url, redis_channel=channel, timeout=2.0)
    listener = open_listener("redis", options)
    notifier = open_notifier("redis", options)
    try:
        await listener.connect()
        old = await group.master_port()
        assert await subscribers_on(old, channel) == 1
        await notifier.send(encode_hint(Hint(1, "writer")))
        assert await listener.wait(5.0) == [b"1 writer"]

        # a demoted master keeps its clients for 8 s or more (Sentinel waits before
        # reconfiguring it): the listener must notice the switch itself, sooner
        scenarios = ((2, group.failover, 6.0), (3, kill_and_wait(group), 20.0))
        for revision, fail_over, within in scenarios:
            new = await fail_over()
            await reconnect(listener, within)
            assert await subscribers_on(new, channel) == 1
            payload = encode_hint(Hint(revision, "writer"))
            await notifier.send(payload)  # it asks the Sentinels first
            assert await listener.wait(5.0) == [payload]
            assert await head_on(new, channel) == payload
            assert await notifier.head() == payload
            assert await notifier.listeners() == 1
    finally:
        await listener.close()
        await notifier.close()


def kill_and_wait(group: SentinelGroup) -> Callable[[], Awaitable[int]]:
    async def kill() -> int:
        return await group.new_master(await group.kill_master())

    return kill


async def reconnect(listener: ListenerABC, within: float) -> None:
    """As the runner does: wait until the channel is lost (the listener sees
    the Sentinels name another master; a crashed one drops its clients), then
    connect until it works."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            assert await listener.wait(0.2) == []
        pytest.fail(f"the subscription outlived the failover by {within} s")
    except ChannelLostError:
        pass
    while True:
        try:
            await listener.connect()
            return
        except ChannelLostError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_workers_converge_through_failovers_under_a_stream_of_updates(
    group: SentinelGroup, tmp_path: Path, sqlite_url: str
) -> None:
    """``hypercorn -w 3`` on a Sentinel URL; a stream of updates while the master
    hands over, then while the new one crashes: every worker converges on the
    last revision, the store holds every update, the witness is on the new
    master, and updates (from the app and the CLI) flow again by message."""
    channel = channel_name()
    env = deployment_env(
        "redis",
        sqlite_url,
        tmp_path,
        WAFFLE_REDIS_URL=group.url,
        WAFFLE_REDIS_CHANNEL=channel,
        WAFFLE_CHECK_INTERVAL=SILENT,
        WAFFLE_SYNC_KEY="sentinel-test-key",
    )
    waffle = updater(env)
    async with (
        waffle.connected(),
        serving(env, tmp_path / "hypercorn.log", workers=3) as deployment,
    ):
        pids = await deployment.worker_pids()
        revision = await waffle.update({"MAX_ITEMS": 1})
        await converge(deployment, pids, revision, BY_MESSAGE, MAX_ITEMS=1)
        written = [revision]

        async def stream(first: int) -> None:
            for number in range(first, first + 25):
                written.append(await waffle.update({"MAX_ITEMS": number}))
                await asyncio.sleep(0.05)

        for first, fail_over in ((100, group.failover), (200, kill_and_wait(group))):
            _, new = await asyncio.gather(stream(first), fail_over_soon(fail_over))
            last = first + 24
            await converge(deployment, pids, written[-1], AFTER_FAILOVER, MAX_ITEMS=last)
            assert written == list(range(1, len(written) + 1)), "an update was lost"
            store = waffle._connected().store
            assert await store.latest_revision() == written[-1]
            # a handed-over master keeps its subscribers until each listener's own
            # look at the Sentinels (test_both_ends_follow_the_master bounds it)
            await until_subscribed(new, channel, len(pids), within=AFTER_FAILOVER)
            # the channel works again: by message, well before the periodic
            # check; and the witness is on the new master (the hints sent to
            # the old one while it was handing over are lost with it)
            revision = await waffle.update({"MAX_ITEMS": last + 1})
            written.append(revision)
            await converge(deployment, pids, revision, BY_MESSAGE, MAX_ITEMS=last + 1)
            head = await head_on(new, channel)
            assert head is not None
            assert head.split()[0] == str(revision).encode()

        # a command run now finds the workers subscribed on the new master
        # (it refuses a write no worker listens to) and reaches them there
        await cli(env, "set", "MAX_ITEMS=499", "--actor", "sentinel-test")
        await converge(deployment, pids, written[-1] + 1, BY_MESSAGE, MAX_ITEMS=499)


async def fail_over_soon(fail_over: Callable[[], Awaitable[int]]) -> int:
    await asyncio.sleep(0.3)  # while updates stream
    return await fail_over()
