"""Changes carried in the message: applied with no database round trip by a
worker serving their base, and any doubt (a gap, a key not declared, a value
that does not fit, a forged, tampered, replayed or unsigned message) falls
back to the catch-up from the store. Real Redis, PostgreSQL and files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from harness import REDIS_URL
from quart_waffle import QuartWaffle, settings_changed
from quart_waffle.store import create_engine
from quart_waffle.sync import (
    Carried,
    Hint,
    decode_hint,
    decode_message,
    derive_key,
    encode_hint,
    encode_message,
)
from quart_waffle.sync import message as message_module
from tests.conftest import require
from tests.helpers import CONFS, make_waffle
from tests.sync_helpers import channel_options, store_reads, until, worker

KEY = derive_key("fleet-secret-key")
SYNC_KEY = "fleet-secret-key"
STORE = "0123456789abcdef0123456789abcdef"


async def reaches(waffle: QuartWaffle, revision: int) -> None:
    await until(lambda: waffle.revision == revision, 2.0, f"at {waffle.revision}, not {revision}")


# The message itself.


def test_a_carried_change_round_trips_in_order() -> None:
    changes = {"THEME": '"dark"', "GREETING": '"Grüß dich"', "MAX_ITEMS": None}
    payload = encode_message(Hint(7, "a1"), changes, key=KEY, store=STORE, max_payload=65536)
    assert payload.isascii()
    message = decode_message(payload, KEY, STORE)
    assert message == Carried(7, "a1", 6, tuple(changes.items()), STORE)


def test_a_change_to_another_store_reads_as_the_hint_alone() -> None:
    payload = encode_message(
        Hint(7, "a1"), {"THEME": '"x"'}, key=KEY, store=STORE, max_payload=9999
    )
    assert decode_message(payload, KEY, "another store's identity") == Hint(7, "a1")


def test_the_first_line_is_the_bare_hint_every_older_reader_takes() -> None:
    payload = encode_message(
        Hint(7, "a1"), {"THEME": '"dark"'}, key=KEY, store=STORE, max_payload=65536
    )
    line = payload.split(b"\n")[0]
    assert decode_hint(line) == Hint(7, "a1")
    # quart-waffle 0.1 read a payload as int(first word) and the rest as the sender
    text = payload.decode("utf-8", "replace")
    revision, _, sender = text.strip().partition(" ")
    assert int(revision) == 7
    assert sender != "a1"
    # without the key, a new reader takes it as a hint too
    assert decode_message(payload, None, STORE) == Hint(7, "a1")


@pytest.mark.parametrize(
    ("changes", "key", "max_payload"),
    [
        ({"THEME": '"dark"'}, None, 65536),  # no key: bare hints only
        ({"BANNER": json.dumps("x" * 9000)}, KEY, 7900),  # larger than NOTIFY takes
        ({}, KEY, 65536),
        (None, KEY, 65536),
    ],
)
def test_without_a_key_or_room_the_message_is_the_bare_hint(
    changes: dict[str, str | None] | None, key: bytes | None, max_payload: int
) -> None:
    payload = encode_message(Hint(7, "a1"), changes, key=key, store=STORE, max_payload=max_payload)
    assert payload == encode_hint(Hint(7, "a1"))


def forged(body: dict[str, Any], key: bytes, line: bytes = b"7 a1") -> bytes:
    """A payload signed with ``key`` over any body."""
    encoded = json.dumps(body, separators=(",", ":")).encode()
    mac = message_module._mac(key, line, encoded).encode()
    return b"%s\nw1 %s %s" % (line, mac, encoded)


def genuine_body(**overrides: Any) -> dict[str, Any]:
    return {
        "base": 6,
        "at": int(time.time() * 1000),
        "store": STORE,
        "changes": [["THEME", '"dark"']],
    } | overrides


@pytest.mark.parametrize(
    "payload",
    [
        forged(genuine_body(), derive_key("another key")),  # wrong key
        forged(genuine_body(), KEY).replace(b'\\"dark\\"', b'\\"evil\\"'),  # tampered value
        forged(genuine_body(), KEY).replace(b"w1 ", b"w9 "),  # unknown version
        forged(genuine_body(), KEY, line=b"8 a1"),  # the hint line changed after signing
        forged(genuine_body(base=5), KEY),  # base is not the revision before
        forged(genuine_body(at=0), KEY),  # a replay from long ago
        forged(genuine_body(changes=[["THEME", 5]]), KEY),  # not stored text
        forged(genuine_body(changes=[]), KEY),
        forged(genuine_body(changes="THEME"), KEY),
        forged(genuine_body(store="another store"), KEY),  # committed elsewhere
        forged(genuine_body(store=None), KEY),
        forged({k: v for k, v in genuine_body().items() if k != "store"}, KEY),
        b"7 a1\nw1 " + b"0" * 64 + b" {}",  # unsigned
    ],
)
def test_any_doubt_reads_as_the_hint_alone(payload: bytes) -> None:
    message = decode_message(payload, KEY, STORE)
    assert message is not None
    assert not isinstance(message, Carried)


def test_a_message_is_good_for_max_age_seconds_either_way() -> None:
    now = int(time.time() * 1000)
    window = int(message_module.MAX_AGE * 1000)
    for at, carried in [
        (now - window + 2000, True),
        (now + window - 2000, True),
        (now - window - 1000, False),  # a replay
        (now + window + 1000, False),
    ]:
        message = decode_message(forged(genuine_body(at=at), KEY), KEY, STORE)
        assert isinstance(message, Carried) is carried


def test_oversized_or_garbled_payloads_are_not_hints() -> None:
    assert decode_message(b"7 a1\n" + b"x" * (message_module.MAX_MESSAGE), KEY, STORE) is None
    assert decode_message(b"-7 a1\nw1 x {}", KEY, STORE) is None


# Workers on real channels.

CHANNELS = ["file", "redis", "postgres"]


@pytest.fixture(name="options", params=CHANNELS)
def _options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return {**channel_options(request, tmp_path, request.param), "sync_key": SYNC_KEY}


@pytest.fixture(name="pair")
async def _pair(options: dict[str, Any]) -> AsyncIterator[tuple[QuartWaffle, QuartWaffle]]:
    a, b = worker(options), worker(options)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        yield a, b


async def test_a_change_is_applied_from_the_message_with_no_store_read(
    pair: tuple[QuartWaffle, QuartWaffle], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    calls = store_reads(b, monkeypatch)
    writer_calls = store_reads(a, monkeypatch)
    heard: list[dict[str, Any]] = []

    async def receiver(_app: Any, **extra: Any) -> None:
        heard.append(extra["changes"])

    settings_changed.connect(receiver, b.app)
    try:
        for number in range(5):
            revision = await a.update({"MAX_ITEMS": 30 + number, "THEME": "dark"})
            await reaches(b, revision)
            assert b.get("MAX_ITEMS") == 30 + number
            assert b.app is not None
            assert b.app.config["MAX_ITEMS"] == 30 + number
        revision = await a.reset(["MAX_ITEMS"])
        await reaches(b, revision)
    finally:
        settings_changed.disconnect(receiver, b.app)
    assert b.get("MAX_ITEMS") == 20
    assert b.is_default("MAX_ITEMS")
    assert b.snapshot.revisions["MAX_ITEMS"] == revision
    assert b.snapshot.revisions["THEME"] == 1  # unchanged after revision 1: not re-sent
    assert calls == []
    assert writer_calls == []
    assert heard[0] == {"MAX_ITEMS": (20, 30), "THEME": ("light", "dark")}
    assert heard[-1] == {"MAX_ITEMS": (34, 20)}


async def test_a_gap_falls_back_to_the_store(
    pair: tuple[QuartWaffle, QuartWaffle], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    # revision 1 is written without a message (a lost one): B misses it
    await a._connected().store.write({"THEME": '"dark"'})
    calls = store_reads(b, monkeypatch)
    revision = await a.update({"MAX_ITEMS": 42})  # A catches up itself first, then carries 2
    await reaches(b, revision)
    assert (b.get("THEME"), b.get("MAX_ITEMS")) == ("dark", 42)
    assert calls == [0]


async def test_a_key_not_declared_or_a_value_that_does_not_fit_goes_to_the_store(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolling deploy: A declares a key B does not know, and allows a theme
    B's declaration refuses; B reads the store, which stays the truth."""
    newer = CONFS | {
        "THEME": {"default": "light", "choices": ["light", "dark", "blue"]},
        "NEW_FLAG": {"default": False},
    }
    a, b = worker(options, confs=newer), worker(options)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        calls = store_reads(b, monkeypatch)
        revision = await a.update({"NEW_FLAG": True})
        await reaches(b, revision)
        revision = await a.update({"THEME": "blue"})
        await reaches(b, revision)
        assert calls == [0, 1]
        assert b.get("THEME") == "light"
        assert "THEME" in b.snapshot.rejected


async def test_workers_without_the_same_key_converge_through_the_store(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = worker(options)
    keyless = worker(options, sync_key=None)
    other_key = worker(options, sync_key="another key entirely")
    assert a.app is not None
    assert keyless.app is not None
    assert other_key.app is not None
    async with a.app.test_app(), keyless.app.test_app(), other_key.app.test_app():
        calls = [store_reads(keyless, monkeypatch), store_reads(other_key, monkeypatch)]
        revision = await a.update({"GREETING": "signed"})
        await until(lambda: keyless.revision == other_key.revision == revision, 2.0)
        assert keyless.get("GREETING") == other_key.get("GREETING") == "signed"
        assert calls == [[0], [0]]


# Trust, on the Redis wire.


@pytest.fixture(name="redis_pair")
async def _redis_pair(
    sqlite_url: str,
) -> AsyncIterator[tuple[QuartWaffle, QuartWaffle, Redis]]:
    """Two serving workers on Redis, and a raw client on their channel."""
    require("Redis")
    channel = f"waffle-test-{os.urandom(6).hex()}"
    options = {
        "watchtype": "redis",
        "redis_url": REDIS_URL,
        "redis_channel": channel,
        "check_interval": 60.0,
        "sync_key": SYNC_KEY,
    }
    a, b = make_waffle(sqlite_url, **options), make_waffle(sqlite_url, **options)
    raw = Redis.from_url(REDIS_URL)
    assert a.app is not None
    assert b.app is not None
    try:
        async with a.app.test_app(), b.app.test_app():
            yield a, b, raw
    finally:
        await raw.aclose()


async def test_forged_tampered_and_replayed_messages_change_no_served_value(
    redis_pair: tuple[QuartWaffle, QuartWaffle, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, raw = redis_pair
    channel = a.config.redis_channel
    pubsub = raw.pubsub()
    await pubsub.subscribe(channel)
    while await pubsub.get_message(timeout=1.0) is None:
        pass  # the subscribe confirmation
    first = await a.update({"GREETING": "genuine"})
    await reaches(b, first)
    captured = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert captured is not None
    assert b"genuine" in captured["data"]
    second = await a.update({"GREETING": "current"})
    await reaches(b, second)
    calls = store_reads(b, monkeypatch)

    line = b"%d attacker" % (second + 1)
    body = genuine_body(base=second, changes=[["GREETING", '"pwned"']])
    attacks = [
        forged(body, derive_key("guessed"), line),
        forged(body, derive_key(""), line),
        captured["data"].replace(b"genuine", b"pwned!!"),  # tampered, same length
        captured["data"].replace(b"%d " % first, b"%d " % (second + 1)),  # moved forward
        captured["data"],  # replayed as it was
    ]
    for attack in attacks:
        await raw.publish(channel, attack)
    await asyncio.sleep(0.3)
    assert b.get("GREETING") == "current"
    assert a.get("GREETING") == "current"
    assert b.revision == second
    # the forged revisions were newer: they cost paced catch-ups, which found nothing
    assert 1 <= len(calls) <= len(attacks)


async def test_a_secret_never_travels_on_the_wire(
    redis_pair: tuple[QuartWaffle, QuartWaffle, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, raw = redis_pair
    pubsub = raw.pubsub()
    await pubsub.subscribe(a.config.redis_channel)
    while await pubsub.get_message(timeout=1.0) is None:
        pass
    calls = store_reads(b, monkeypatch)
    await a.update({"GREETING": "in the clear"})
    revision = await a.update({"API_KEY": "hunter2-very-secret", "GREETING": "with a secret"})
    await reaches(b, revision)
    assert b.get("API_KEY") == "hunter2-very-secret"
    payloads = []
    while (
        message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    ) is not None:
        payloads.append(message["data"])
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert len(payloads) == 2
    assert b"in the clear" in payloads[0]  # values do travel: the wire is what we think
    assert b"hunter2" not in payloads[1]
    assert b"with a secret" not in payloads[1]
    assert payloads[1] == encode_hint(Hint(revision, a._connected().sync.sender))
    assert calls == [1]  # the change holding a secret was read from the store


# Another database on the same channel.


@pytest.fixture(name="shared_channel")
def _shared_channel() -> dict[str, Any]:
    """Options of a Redis channel shared with another deployment, same key."""
    require("Redis")
    return {
        "watchtype": "redis",
        "redis_url": REDIS_URL,
        "redis_channel": f"waffle-test-{os.urandom(6).hex()}",
        "check_interval": 60.0,
        "sync_key": SYNC_KEY,
    }


async def test_a_write_to_another_database_on_the_channel_changes_no_served_value(
    database_url: str, tmp_path: Path, shared_channel: dict[str, Any]
) -> None:
    """A command pointed at the wrong database, announcing on the workers'
    channel with their key: its change is a hint at most, and the real write
    that follows with the same revision number still reaches the workers."""
    a, b = make_waffle(database_url, **shared_channel), make_waffle(database_url, **shared_channel)
    stray = make_waffle(f"sqlite:///{tmp_path / 'other.db'}", **shared_channel)
    operator = make_waffle(database_url, **shared_channel)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        assert a._connected().identity == b._connected().identity
        async with stray.connected():
            assert stray._connected().identity != a._connected().identity
            assert await stray.update({"MAX_ITEMS": 499}) == 1
        await asyncio.sleep(0.3)
        assert (a.get("MAX_ITEMS"), b.get("MAX_ITEMS")) == (20, 20)
        assert (a.revision, b.revision) == (0, 0)
        async with operator.connected():
            assert await operator.update({"MAX_ITEMS": 42}) == 1
        await reaches(a, 1)
        await reaches(b, 1)
        assert (a.get("MAX_ITEMS"), b.get("MAX_ITEMS")) == (42, 42)


async def test_workers_starting_together_agree_on_the_store_identity(database_url: str) -> None:
    waffles = [make_waffle(database_url) for _ in range(4)]

    async def identity(waffle: QuartWaffle) -> str:
        async with waffle.connected():
            return waffle._connected().identity

    identities = await asyncio.gather(*(identity(waffle) for waffle in waffles))
    assert len(set(identities)) == 1
    assert await identity(make_waffle(database_url)) == identities[0]


# A store behind the worker.


async def test_a_store_restored_to_an_older_revision_is_reloaded_whole(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's newest revision below the one served (a backup restored,
    or a foreign message that slipped through): the worker reloads every key
    and follows the writes made from there on."""
    a, b = make_waffle(database_url), make_waffle(database_url)
    assert a.app is not None
    assert b.app is not None
    async with a.app.test_app(), b.app.test_app():
        await a.update({"MAX_ITEMS": 30})
        await a.update({"GREETING": "from the lost revisions"})
        assert await a.update({"MAX_ITEMS": 40}) == 3
        assert await b.refresh() == 3
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:  # the backup taken at revision 1
                await connection.execute(text("DELETE FROM waffle_settings WHERE key = 'GREETING'"))
                await connection.execute(
                    text("UPDATE waffle_settings SET value = '30', revision = 1")
                )
                await connection.execute(text("UPDATE waffle_head SET revision = 1"))
        finally:
            await engine.dispose()
        with caplog.at_level(logging.WARNING, logger="quart_waffle"):
            assert await b.refresh() == 1
            assert await b.refresh() == 1
        assert b.get("MAX_ITEMS") == 30
        assert b.get("GREETING") == "Hello"
        assert b.is_default("GREETING")
        assert b.app.config["GREETING"] == "Hello"
        warnings = [record.getMessage() for record in caplog.records]
        assert len(warnings) == 1, warnings
        assert "below revision 3" in warnings[0]
        # the writes made from the restored revision on reach every worker
        assert await a.update({"MAX_ITEMS": 55}) == 2
        assert a.get("MAX_ITEMS") == 55
        assert await b.refresh() == 2
        assert b.get("MAX_ITEMS") == 55


async def test_a_forged_hint_never_shows_in_health(
    redis_pair: tuple[QuartWaffle, QuartWaffle, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Health records a hinted revision only once the store confirmed it."""
    a, b, raw = redis_pair
    channel = a.config.redis_channel
    first = await a.update({"GREETING": "genuine"})
    await until(lambda: b.health().hinted_revision == first, 2.0, "genuine hint not recorded")
    calls = store_reads(b, monkeypatch)
    await raw.publish(channel, b"9223372036854775807 evil")
    await until(lambda: len(calls) == 1, 2.0, "the forged hint cost no catch-up")
    await asyncio.sleep(0.1)
    assert b.health().hinted_revision == first
    await raw.publish(channel, b"%d evil" % (first + 1))  # the next revision, not made yet
    await until(lambda: len(calls) == 2, 2.0, "the forged hint cost no catch-up")
    await asyncio.sleep(0.1)
    assert b.health().hinted_revision == first
    second = await a.update({"API_KEY": "a secret: a bare hint, confirmed by a catch-up"})
    await until(lambda: b.health().hinted_revision == second, 2.0, "real hint not recorded")
    assert b.revision == second
