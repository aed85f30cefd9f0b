"""Numbers and bodies read from requests, bounded before they are trusted."""

from __future__ import annotations

import re

_NATURAL = re.compile(r"[0-9]{1,18}")


def natural_number(raw: str | None) -> int | None:
    """``raw`` as an int when it is 1 to 18 ASCII digits, else None.

    ``str.isdigit`` is not enough: it is true for ``"²"``, which ``int``
    refuses, and for other scripts' digits, which ``int`` accepts.
    """
    if raw is None or _NATURAL.fullmatch(raw) is None:
        return None
    return int(raw)
