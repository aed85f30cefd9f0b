"""What travels on a channel: a hint, ``"<revision> <sender>"``, and the one
function that decides whether a payload is one."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PAYLOAD = 256
"""Bytes; a longer payload is not read as a hint, whatever it holds."""

MAX_REVISION = 2**63 - 1
"""The largest revision a database column (BIGINT) can hold."""

_HINT = re.compile(rb"(0|[1-9][0-9]{0,18}) ([A-Za-z0-9_.-]{1,64})\n?")


@dataclass(frozen=True)
class Hint:
    """ "Revision ``revision`` is committed", from the worker ``sender``.

    A hint is never the data: a receiver catches up from the store.
    """

    revision: int
    sender: str


def encode_hint(hint: Hint) -> bytes:
    """The payload of ``hint``: ``b"<revision> <sender>"``."""
    return f"{hint.revision} {hint.sender}".encode("ascii")


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
