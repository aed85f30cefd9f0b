"""What travels on a channel, and the one place that reads it.

A **hint**, ``"<revision> <sender>"``, says "revision R is committed: look in
the store". A **carried change** is a hint line followed by a signed
envelope holding what the revision changed over the one before it (its
base), so a worker serving the base applies it without a database round
trip::

    <revision> <sender>\\n
    w1 <HMAC-SHA256 hex> {"base": B, "at": <ms since the epoch>, "store": <identity>,
                          "changes": [[key, text], ...], "ack": true}

``text`` is the stored JSON text, or null for "back to the declared default";
``store`` the identity of the database the change was committed to: a
receiver whose store is another one reads the message as its hint alone.
``ack`` (present only when true) says the writer waits until every worker
has applied the revision: a receiver publishes its presence at once rather
than at its next heartbeat (docs/fleet.md). Readers ignore members they do
not know, so ``ack`` needs no new version: a worker that does not know it
publishes at once anyway, and a message without it is a change nobody waits for.
The first line is an ordinary hint, so a worker that does not read
envelopes (quart-waffle 0.1 takes the first word as the revision) still
catches up from the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_PAYLOAD = 256
"""Bytes; a longer payload without an envelope is not read as a hint."""

MAX_MESSAGE = 64 * 1024
"""Bytes; a longer payload is not read at all."""

MAX_REVISION = 2**63 - 1
"""The largest revision a database column (BIGINT) can hold."""

MAX_AGE = 60.0
"""Seconds an envelope stays good for, and the clock skew allowed the other
way; an older one (a replay) is read as its hint only."""

VERSION = b"w1"
"""The envelope format this code writes and reads; any other is read as a hint."""

_HINT = re.compile(rb"(0|[1-9][0-9]{0,18}) ([A-Za-z0-9_.-]{1,64})\n?")
_KEY_LABEL = b"quart-waffle sync message v1"
_MAC_LENGTH = 64  # hex digits of a SHA-256


@dataclass(frozen=True)
class Hint:
    """ "Revision ``revision`` is committed", from the worker ``sender``:
    a receiver that does not serve it yet catches up from the store."""

    revision: int
    sender: str


@dataclass(frozen=True)
class Carried(Hint):
    """A hint that carries, authenticated, what ``revision`` changed over
    ``base``: key to stored JSON text, None meaning "back to the default";
    ``store`` is the identity of the database it was committed to;
    ``sent_at`` when it was sent (seconds since the epoch, the envelope's
    ``at``), for the propagation metric."""

    base: int
    changes: tuple[tuple[str, str | None], ...]
    store: str
    sent_at: float = field(default=0.0, compare=False)
    ack: bool = field(default=False, compare=False)
    """The writer waits for every worker to apply it: publish presence at once."""


def derive_key(secret: str | bytes) -> bytes:
    """The message key of ``secret`` (``WAFFLE_SYNC_KEY`` or ``SECRET_KEY``):
    an HMAC of a fixed label, so the secret itself signs nothing else."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()


def encode_hint(hint: Hint) -> bytes:
    """The payload of ``hint``: ``b"<revision> <sender>"``."""
    return f"{hint.revision} {hint.sender}".encode("ascii")


def encode_message(
    hint: Hint,
    changes: Mapping[str, str | None] | None,
    *,
    key: bytes | None,
    store: str,
    max_payload: int,
    ack: bool = False,
) -> bytes:
    """The payload announcing ``hint``: carrying ``changes`` (what the
    revision changed over the one before in the database whose identity is
    ``store``) when there is a ``key`` and they fit in ``max_payload`` bytes,
    else the bare hint. ``ack``: the writer waits for every worker's
    acknowledgement (a bare hint makes receivers publish at once anyway)."""
    line = encode_hint(hint)
    if key is None or not changes:
        return line
    envelope: dict[str, Any] = {
        "base": hint.revision - 1,
        "at": int(time.time() * 1000),
        "store": store,
        "changes": [[name, text] for name, text in changes.items()],
    }
    if ack:
        envelope["ack"] = True
    body = json.dumps(envelope, separators=(",", ":")).encode("ascii")
    payload = b"%s\n%s %s %s" % (line, VERSION, _mac(key, line, body).encode("ascii"), body)
    return payload if len(payload) <= min(max_payload, MAX_MESSAGE) else line


def decode_hint(payload: bytes) -> Hint | None:
    """The hint in ``payload``, or None when it is not one.

    Only ASCII digits without sign, underscore or leading zero, a revision a
    database can hold, a short sender id and at most :data:`MAX_PAYLOAD`
    bytes: anything else (``-5``, ``1_0``, other scripts' digits, 2**64, a
    megabyte of text) is not a hint.
    """
    if len(payload) > MAX_PAYLOAD:
        return None
    match = _HINT.fullmatch(payload)
    if match is None:
        return None
    revision = int(match[1])
    if revision > MAX_REVISION:
        return None
    return Hint(revision, match[2].decode("ascii"))


def decode_message(payload: bytes, key: bytes | None, store: str) -> Hint | None:
    """What ``payload`` says: a :class:`Carried` change when it holds an
    envelope authenticated by ``key``, fresh, well formed and committed to the
    database whose identity is ``store`` (the receiver's own); else its hint
    line alone (any doubt means "look in the store"); None when it is not
    even a hint."""
    if len(payload) > MAX_MESSAGE:
        return None
    line, _, envelope = payload.partition(b"\n")
    hint = decode_hint(line)
    if hint is None or not envelope or key is None:
        return hint
    version, _, rest = envelope.partition(b" ")
    mac, _, body = rest.partition(b" ")
    if version != VERSION or len(mac) != _MAC_LENGTH:
        return hint
    if not hmac.compare_digest(mac, _mac(key, line, body).encode("ascii")):
        return hint
    carried = _carried(hint, body)
    return carried if carried is not None and carried.store == store else hint


def _mac(key: bytes, line: bytes, body: bytes) -> str:
    # the one-shot digest runs in C, several times faster than an hmac object
    return hmac.digest(key, b"%s\n%s %s" % (line, VERSION, body), "sha256").hex()


def _carried(hint: Hint, body: bytes) -> Carried | None:
    """The envelope's changes, or None if anything in it is off."""
    try:
        data: Any = json.loads(body)
        base, sent_at, store, changes = data["base"], data["at"], data["store"], data["changes"]
    except (ValueError, TypeError, KeyError):
        return None
    if (
        type(base) is not int
        or base != hint.revision - 1
        or type(sent_at) is not int
        or abs(time.time() - sent_at / 1000) > MAX_AGE
        or not isinstance(store, str)
        or not isinstance(changes, list)
        or not changes
    ):
        return None
    pairs: list[tuple[str, str | None]] = []
    for change in changes:
        if (
            not isinstance(change, list)
            or len(change) != 2
            or not isinstance(change[0], str)
            or not (change[1] is None or isinstance(change[1], str))
        ):
            return None
        pairs.append((change[0], change[1]))
    ack = data.get("ack") is True
    return Carried(hint.revision, hint.sender, base, tuple(pairs), store, sent_at / 1000, ack)
