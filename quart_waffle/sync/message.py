"""What travels on a channel: a hint, ``"<revision> <sender>"``, and the one
function that decides whether a payload is one."""

from __future__ import annotations

from dataclasses import dataclass


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
    """The hint in ``payload``, or None when it is not one."""
    revision, _, sender = payload.decode("utf-8", "replace").strip().partition(" ")
    try:
        return Hint(int(revision), sender)
    except ValueError:
        return None
