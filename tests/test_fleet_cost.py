"""What presence costs on a change: several workers in one process on one
Redis channel and SQLite store. An ordinary change (nobody waits) makes no
worker write its presence record before its heartbeat; a write made with
``wait`` makes each write it at once and is acknowledged promptly; a change
nobody waited for is still acknowledged within about one heartbeat; a change
that came as a bare hint (no sync key) is published at once. Plus the
message's ``ack`` member and the cheap record encoder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from harness import REDIS_URL
from quart_waffle import QuartWaffle
from quart_waffle.fleet import PresenceRecord
from quart_waffle.fleet.presence import RecordEncoder, decode, encode
from quart_waffle.sync.message import Carried, Hint, decode_message, derive_key, encode_message
from tests.helpers import ADMIN_TOKEN, serving
from tests.sync_helpers import channel_options, until, worker

KEY = "fleet-cost-test-key"
WORKERS = 4


@pytest.fixture(name="options")
def _options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return channel_options(request, tmp_path, "redis")


def writes(waffles: list[QuartWaffle]) -> list[int]:
    return [waffle._connected().fleet.backend.writes for waffle in waffles]


async def stored_revisions(options: dict[str, Any]) -> dict[str, int]:
    """Worker id to the revision its record in the Redis hash says."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        fields = await client.hgetall(f"{options['redis_channel']}:fleet")
    finally:
        await client.aclose()
    return {str(field): json.loads(text)["revision"] for field, text in fields.items()}


async def test_ordinary_change_writes_no_presence(options: dict[str, Any]) -> None:
    """Heartbeat a minute away: a change nobody waits for reaches every
    worker and none of them writes its record; a write with ``wait`` then
    makes each write once, and is acknowledged well before any heartbeat."""
    fleet = [worker(options, sync_key=KEY, heartbeat_interval=60.0) for _ in range(WORKERS)]
    writer, *others = fleet
    async with serving(*fleet):
        await until(lambda: all(count >= 1 for count in writes(fleet)), 5, "first records")
        await asyncio.sleep(0.3)  # the start's own catch-ups published already
        before = writes(fleet)
        stored = await stored_revisions(options)

        revision = await writer.update({"MAX_ITEMS": 41})
        await until(lambda: all(w.revision == revision for w in others), 5, "change applied")
        await asyncio.sleep(1.5)  # more than a look (1 s): nothing published meanwhile
        assert writes(fleet) == before
        assert await stored_revisions(options) == stored

        ack = await writer.update({"MAX_ITEMS": 42}, wait=10)
        assert ack.complete, ack.text
        assert (ack.applied, ack.expected) == (WORKERS, WORKERS)
        assert ack.elapsed < 5, ack.text  # the flag, not a heartbeat a minute away
        await until(
            lambda: all(
                after >= first + 1 for after, first in zip(writes(fleet), before, strict=False)
            ),
            5,
            "one record each",
        )
        assert set((await stored_revisions(options)).values()) == {ack.revision}


async def test_reset_and_api_style_wait_also_flagged(options: dict[str, Any]) -> None:
    """``reset(..., wait=)`` carries the flag too (the admin API's DELETE
    and reset with ``?wait=true`` go through it)."""
    fleet = [worker(options, sync_key=KEY, heartbeat_interval=60.0) for _ in range(3)]
    writer = fleet[0]
    async with serving(*fleet):
        await until(lambda: all(count >= 1 for count in writes(fleet)), 5, "first records")
        await writer.update({"MAX_ITEMS": 7})
        ack = await writer.reset(["MAX_ITEMS"], wait=10)
        assert ack.complete, ack.text
        assert ack.applied == 3, ack.text
        assert ack.elapsed < 5, ack.text


async def test_admin_api_wait_is_flagged(options: dict[str, Any]) -> None:
    """``?wait=true`` on the admin API's writes (PATCH, and DELETE, which
    resets) is acknowledged by both workers long before their heartbeat."""
    writer = worker(options, sync_key=KEY, heartbeat_interval=60.0, admin_token=ADMIN_TOKEN)
    other = worker(options, sync_key=KEY, heartbeat_interval=60.0)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with serving(writer, other):
        await until(lambda: all(n >= 1 for n in writes([writer, other])), 5, "first records")
        assert writer.app is not None
        client = writer.app.test_client()
        for method, path, body in (
            ("PATCH", "/waffle/api/settings", {"values": {"MAX_ITEMS": 13}}),
            ("DELETE", "/waffle/api/settings/MAX_ITEMS", None),
        ):
            response = await client.open(
                f"{path}?wait=true&timeout=10", method=method, json=body, headers=auth
            )
            assert response.status_code == 200, await response.get_data()
            ack = (await response.get_json())["acknowledgement"]
            assert ack["complete"], ack
            assert ack["applied"] == 2, ack
            assert ack["elapsed_ms"] < 5000, ack
            assert other.revision == ack["revision"]


async def test_unflagged_change_acknowledged_within_a_heartbeat(
    options: dict[str, Any],
) -> None:
    fleet = [worker(options, sync_key=KEY, heartbeat_interval=1.0) for _ in range(3)]
    writer = fleet[0]
    async with serving(*fleet):
        await until(lambda: all(count >= 1 for count in writes(fleet)), 5, "first records")
        started = time.monotonic()
        revision = await writer.update({"MAX_ITEMS": 43})
        ack = await writer.acknowledged(revision, within=10)
        assert ack.complete, ack.text
        assert ack.applied == 3, ack.text
        # one heartbeat plus one look, with slack for a loaded machine
        assert time.monotonic() - started < 6, ack.text


async def test_bare_hint_publishes_at_once(options: dict[str, Any]) -> None:
    """No sync key: a change travels as a bare hint and every worker catches
    up from the store, which it reports at once (as before), so an
    acknowledgement asked after the fact needs no heartbeat."""
    fleet = [worker(options, sync_key=None, heartbeat_interval=60.0) for _ in range(3)]
    writer = fleet[0]
    async with serving(*fleet):
        await until(lambda: all(count >= 1 for count in writes(fleet)), 5, "first records")
        revision = await writer.update({"MAX_ITEMS": 44})
        ack = await writer.acknowledged(revision, within=10)
        assert ack.complete, ack.text
        assert ack.applied == 3, ack.text
        assert ack.elapsed < 5, ack.text


def test_ack_member_travels_signed_and_is_optional() -> None:
    key = derive_key(KEY)
    hint = Hint(8, "sender")
    flagged = encode_message(hint, {"A": "1"}, key=key, store="s", max_payload=8000, ack=True)
    plain = encode_message(hint, {"A": "1"}, key=key, store="s", max_payload=8000)
    assert b'"ack":true' in flagged
    assert b"ack" not in plain
    carried = decode_message(flagged, key, "s")
    assert isinstance(carried, Carried)
    assert carried.ack
    carried = decode_message(plain, key, "s")
    assert isinstance(carried, Carried)
    assert not carried.ack
    # the flag is under the signature: tampering with it makes a hint of it
    forged = plain.replace(b'"changes"', b'"ack":true,"changes"')
    assert decode_message(forged, key, "s") == Hint(8, "sender")
    assert not isinstance(decode_message(forged, key, "s"), Carried)


def record(**changes: Any) -> PresenceRecord:
    now = time.time()
    fields: dict[str, Any] = {
        "id": "web-1/4242/9f3a1c0e",
        "host": 'web "1" \u00e9',
        "pid": 4242,
        "started_at": now - 100.5,
        "version": "2026.11.25",
        "store": "0123abcd",
        "revision": 42,
        "applied_at": now - 3.25,
        "channel": "redis",
        "connected": True,
        "last_sync": now - 0.5,
        "last_error": None,
        "heartbeat": now,
        "interval": 5.0,
    }
    fields.update(changes)
    return PresenceRecord(**fields)


def test_record_encoder_reads_back_as_encode() -> None:
    encoder = RecordEncoder()
    for each in (
        record(),
        record(revision=43, connected=False, last_sync=None, last_error='lost: "x"\n\u2603'),
        record(id="other/1/2", host="other", pid=1, version="", interval=60.0),
        record(revision=0, applied_at=1.0, heartbeat=2.0),
    ):
        text = encoder(each)
        assert decode(text) == each == decode(encode(each))
        assert json.loads(text) == json.loads(encode(each))
