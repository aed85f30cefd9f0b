"""Who made a change: the one rule an actor name obeys, and the escaping of
control characters wherever recorded text is printed."""

from __future__ import annotations

import re

from .errors import InvalidValueError
from .limits import MAX_ACTOR_LENGTH, MAX_REASON_LENGTH

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Control characters (NUL, newline, tab, ESC, C1), line and paragraph
separators, and lone surrogates: none may be in an actor, all are escaped
when recorded text is printed."""


def _plain_text(value: object, field: str) -> str:
    """``value`` when it is a string without control characters or lone
    surrogates; else :class:`InvalidValueError` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidValueError({field: f"must be a string, got {type(value).__name__}"})
    found = _CONTROL.search(value)
    if found is not None:
        shown = escape_controls(found.group())
        raise InvalidValueError(
            {field: f"may not contain control characters or lone surrogates (found {shown})"}
        )
    return value


def checked_actor(actor: object) -> str:
    """``actor`` as history records it, cut to :data:`MAX_ACTOR_LENGTH`;
    :class:`InvalidValueError` naming ``actor`` when it is no string or holds
    a control character or a lone surrogate (which would forge lines in a
    printed history or fail the write in the driver)."""
    return _plain_text(actor, "actor")[:MAX_ACTOR_LENGTH]


def checked_reason(reason: object) -> str:
    """``reason`` as history records it (why a change was made); as an actor,
    it must be a string without control characters or lone surrogates, and
    at most :data:`MAX_REASON_LENGTH` characters (a longer one is refused:
    a cut reason could say something else). :class:`InvalidValueError`
    names ``reason``."""
    reason = _plain_text(reason, "reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidValueError({"reason": f"must be at most {MAX_REASON_LENGTH} characters"})
    return reason


def escape_controls(text: str) -> str:
    """``text`` with each control character and lone surrogate shown as a
    ``\\xNN`` or ``\\uNNNN`` escape, so that printing it cannot start a new
    line or move the terminal's cursor."""
    return _CONTROL.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
