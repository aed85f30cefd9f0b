"""Hostile traffic on a channel: a flood of valid-looking hints costs paced
catch-ups, not one each, and payloads that are not hints change nothing."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from harness import REDIS_URL
from quart_waffle.sync import ChannelOptions, Hint, SyncRunner, decode_hint, open_channel
from quart_waffle.sync.message import MAX_REVISION
from quart_waffle.sync.pacing import Pacing
from quart_waffle.sync.runner import CATCH_UP_BURST, CATCH_UP_SPACING
from tests.conftest import require
from tests.sync_helpers import until

SERVED = 10
ABSURD = [
    b"-5 x",
    b"+5 x",
    b"1_0 x",
    "\u0661\u0662 x".encode(),  # Arabic-Indic digits: int() takes them
    "\u00b2 x".encode(),
    str(2**63).encode() + b" x",
    str(2**64).encode() + b" x",
    b"9" * 4000 + b" x",
    b"1 " + b"x" * 300,
    b"x" * 1_000_000,
    b"05 x",
    b" 5 x",
    b"5\tx",
    b"5 x y",
    b"5",
    b"\xff\xfe 5",
    b"",
]


@pytest.mark.parametrize("payload", ABSURD)
def test_only_a_plain_hint_is_a_hint(payload: bytes) -> None:
    assert decode_hint(payload) is None


def test_hints_are_read_exactly() -> None:
    assert decode_hint(b"0 a") == Hint(0, "a")
    assert decode_hint(b"42 0123456789abcdef\n") == Hint(42, "0123456789abcdef")
    assert decode_hint(f"{MAX_REVISION} a".encode()) == Hint(MAX_REVISION, "a")


def test_pacing_answers_a_lone_hint_at_once_and_spaces_a_flood() -> None:
    pacing = Pacing(spacing=0.05, burst=3)
    starts = []
    now = 100.0
    while now < 101.0:  # hints every millisecond for a second
        if pacing.ready_at(now) <= now:
            pacing.record(now)
            starts.append(now)
        now += 0.001
    assert len(starts) <= 3 + 1.0 / 0.05 + 1
    assert starts[:3] == pytest.approx([100.0, 100.001, 100.002])
    assert pacing.ready_at(102.0) == 102.0  # after a quiet second: at once again


class Counter:
    """A catch-up that counts its calls and takes a millisecond, as a query does."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.001)
        return SERVED


@pytest.fixture(name="redis_runner")
async def _redis_runner() -> AsyncIterator[tuple[SyncRunner, Counter, str]]:
    """A watching runner on a fresh channel of the shared Redis, serving SERVED."""
    require("Redis")
    name = f"waffle-test-{os.urandom(6).hex()}"
    counter = Counter()
    options = ChannelOptions(redis_url=REDIS_URL, redis_channel=name)
    runner = SyncRunner(open_channel("redis", options), counter, lambda: SERVED, 60.0)
    await runner.start(watch=True)
    try:
        yield runner, counter, name
    finally:
        await runner.stop()


async def test_a_redis_flood_costs_paced_catch_ups(
    redis_runner: tuple[SyncRunner, Counter, str],
) -> None:
    runner, counter, name = redis_runner
    flooder = Redis.from_url(REDIS_URL)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(3000):  # valid-looking hints, newer than served and far beyond
            revision = SERVED + 1 + index if index % 2 else MAX_REVISION - 1
            await flooder.publish(name, f"{revision} flooder")
            if index % 10 == 0:
                await asyncio.sleep(0.001)  # keep it coming for a while
        # health records only what the store confirms: the flood never shows there,
        # and a last hint the worker serves already marks the end of the flood
        await flooder.publish(name, f"{SERVED} flooder")
        await until(lambda: runner.health().hinted_revision == SERVED, 5.0, "flood lost")
        lasted = loop.time() - started
        await asyncio.sleep(2 * CATCH_UP_SPACING)  # the one owed after the last hint
        flood_catch_ups = counter.calls
        assert flood_catch_ups <= CATCH_UP_BURST + lasted / CATCH_UP_SPACING + 2, (
            flood_catch_ups,
            lasted,
        )
        # quiet again: a lone hint is answered, and the runner never gave up
        await asyncio.sleep(CATCH_UP_BURST * CATCH_UP_SPACING)
        await flooder.publish(name, f"{SERVED + 1} writer")
        await until(lambda: counter.calls == flood_catch_ups + 1, 2.0, "lone hint unanswered")
        assert runner.health().connected
        assert runner.health().last_error is None
    finally:
        await flooder.aclose()


async def test_absurd_redis_payloads_change_nothing(
    redis_runner: tuple[SyncRunner, Counter, str], caplog: pytest.LogCaptureFixture
) -> None:
    runner, counter, name = redis_runner
    publisher = Redis.from_url(REDIS_URL)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
            for _ in range(20):
                for payload in ABSURD:
                    await publisher.publish(name, payload)
            await publisher.publish(name, f"{SERVED} writer")  # not newer: no catch-up
            await until(lambda: runner.health().hinted_revision == SERVED, 5.0, "never heard")
        # at most paced catch-ups (an unreadable payload may have displaced a hint)
        lasted = loop.time() - started
        assert counter.calls <= CATCH_UP_BURST + lasted / CATCH_UP_SPACING + 2
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1, warnings
        assert "not hints" in warnings[0]
        assert len(warnings[0]) < 300
        health = runner.health()
        assert health.connected
        assert health.last_error is None
    finally:
        await publisher.aclose()


async def test_absurd_watcher_file_contents_change_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "waffle.revision"
    counter = Counter()
    options = ChannelOptions(watcher_file=str(path), watch_interval=0.005)
    runner = SyncRunner(open_channel("file", options), counter, lambda: SERVED, 60.0)
    with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
        await runner.start(watch=True)
        try:
            for payload in ABSURD:
                replacement = tmp_path / "replacement"
                replacement.write_bytes(payload)
                os.replace(replacement, path)
                await asyncio.sleep(0.02)  # a few polls: each content is seen
            path.write_text(f"{SERVED} writer\n")
            await until(lambda: runner.health().hinted_revision == SERVED, 2.0, "not heard")
            health = runner.health()
            assert health.connected
            assert health.last_error is None
        finally:
            await runner.stop()
    assert counter.calls <= len(ABSURD) + 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
