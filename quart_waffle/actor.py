"""Who made a change: the one rule an actor name obeys, and the escaping of
control characters wherever recorded text is printed."""

from __future__ import annotations

import re

from .errors import InvalidValueError
from .limits import MAX_ACTOR_LENGTH

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Control characters (NUL, newline, tab, ESC, C1), line and paragraph
separators, and lone surrogates: none may be in an actor, all are escaped
when recorded text is printed."""


def checked_actor(actor: object) -> str:
    """``actor`` as history records it, cut to :data:`MAX_ACTOR_LENGTH`;
    :class:`InvalidValueError` naming ``actor`` when it is no string or holds
    a control character or a lone surrogate (which would forge lines in a
    printed history or fail the write in the driver)."""
    if not isinstance(actor, str):
        raise InvalidValueError({"actor": f"must be a string, got {type(actor).__name__}"})
    found = _CONTROL.search(actor)
    if found is not None:
        shown = escape_controls(found.group())
        reason = f"may not contain control characters or lone surrogates (found {shown})"
        raise InvalidValueError({"actor": reason})
    return actor[:MAX_ACTOR_LENGTH]


def escape_controls(text: str) -> str:
    """``text`` with each control character and lone surrogate shown as a
    ``\\xNN`` or ``\\uNNNN`` escape, so that printing it cannot start a new
    line or move the terminal's cursor."""
    return _CONTROL.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
