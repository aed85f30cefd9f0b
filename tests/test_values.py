"""Hostile values and unreadable rows on real SQLite and real PostgreSQL: what
may be written, what a worker does with a row it cannot read, what history
shows and keeps."""

from __future__ import annotations

from typing import Any

import pytest

from quart_waffle import InvalidValueError
from quart_waffle.kinds import MAX_DEPTH, MAX_VALUE_BYTES
from tests.helpers import make_waffle


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: list[tuple[str, Any, str]] = [
    ("BANNER", {"text": _nested(MAX_DEPTH)}, f"must nest at most {MAX_DEPTH}"),
    ("BANNER", {"text": _nested(50_000)}, f"must nest at most {MAX_DEPTH}"),
    ("BANNER", {"text": "x" * MAX_VALUE_BYTES}, f"must be at most {MAX_VALUE_BYTES} bytes"),
    ("GREETING", "x" * (MAX_VALUE_BYTES + 1), f"must be at most {MAX_VALUE_BYTES} bytes"),
    ("GREETING", "caf\udce9", "lone surrogates"),
    ("BANNER", {"text": "\ud800"}, "lone surrogates"),
    ("BANNER", {"\udfff": "key"}, "lone surrogates"),
    ("RATE", 10**400, "too large"),
    ("RATE", float("inf"), "finite number"),
    ("RATE", float("nan"), "finite number"),
    ("BANNER", {"text": 10**5000}, "must be between"),
    ("BANNER", {"text": 2**64}, "must be between"),
    ("BANNER", {"text": float("nan")}, "NaN or infinity"),
    ("API_KEY", "\ud83d", "lone surrogates"),
]


async def test_hostile_values_are_refused_and_nothing_is_stored(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "before"})
        revision, history = waffle.revision, await waffle.history()
        for key, value, reason in HOSTILE:
            with pytest.raises(InvalidValueError) as caught:
                await waffle.update({key: value, "THEME": "dark"}, actor="attacker")
            assert list(caught.value.errors) == [key]
            assert reason in caught.value.errors[key]
        assert await waffle.refresh() == revision
        assert await waffle.history() == history
        assert waffle.get("THEME") == "light"
    other = make_waffle(database_url)
    async with other.connected():
        assert other.get("GREETING") == "before"


async def test_the_largest_and_deepest_allowed_values_round_trip(database_url: str) -> None:
    deep: Any = {"text": _nested(MAX_DEPTH - 1)}
    big = "é" * ((MAX_VALUE_BYTES - 2) // 2)
    writer = make_waffle(database_url)
    async with writer.connected():
        await writer.update({"BANNER": deep, "GREETING": big})
    reader = make_waffle(database_url)
    async with reader.connected():
        assert reader.get("BANNER") == deep
        assert reader.get("GREETING") == big
