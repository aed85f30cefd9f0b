"""Changing declarations in code (docs/declarations.md): a key nobody set
follows its declared default, reset makes it follow again, and a stored value
that no longer fits, a removed key or a renamed one never stops a worker."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from sqlalchemy import insert

from quart_waffle import ConflictError, DeclarationError, InvalidValueError, QuartWaffle, Setting
from quart_waffle.store import create_engine, settings_table
from tests.helpers import CONFS, make_waffle


def redeployed(database_url: str, **changes: dict[str, Any] | None) -> QuartWaffle:
    """A worker of the next release: ``CONFS`` with some declarations changed
    (None removes one)."""
    confs = {**CONFS, **changes}
    return make_waffle(
        database_url, confs={key: conf for key, conf in confs.items() if conf is not None}
    )


async def test_a_new_default_in_code_is_followed(database_url: str) -> None:
    first = make_waffle(database_url)
    async with first.connected():
        await first.update({"THEME": "dark"})  # another key: the store is not empty
        assert first.get("GREETING") == "Hello"
        assert first.is_default("GREETING")
        assert not first.is_default("THEME")
    second = redeployed(database_url, GREETING={"default": "Bonjour"})
    async with second.connected():
        assert second.get("GREETING") == "Bonjour"
        assert second.is_default("GREETING")
        assert second.app is not None
        assert second.app.config["GREETING"] == "Bonjour"


async def test_reset_is_a_revision_every_worker_sees(database_url: str) -> None:
    a, b = make_waffle(database_url), make_waffle(database_url)
    async with a.connected(), b.connected():
        await a.update({"GREETING": "Hi"})
        await b.refresh()
        assert (b.get("GREETING"), b.is_default("GREETING")) == ("Hi", False)
        revision = await a.reset(["GREETING"], actor="ops")
        assert revision == 2
        assert await b.refresh() == 2
        assert (b.get("GREETING"), b.is_default("GREETING")) == ("Hello", True)
        assert b.snapshot.revisions["GREETING"] == 2
        assert b.app is not None
        assert b.app.config["GREETING"] == "Hello"
        newest = (await a.history(key="GREETING", limit=1))[0]
        assert (newest.revision, newest.old_value, newest.new_value) == (2, "Hi", "Hello")
        assert newest.actor == "ops"
    later = redeployed(database_url, GREETING={"default": "Bonjour"})
    async with later.connected():
        assert later.get("GREETING") == "Bonjour"


async def test_a_value_set_equal_to_the_default_is_kept(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        assert await waffle.update({"GREETING": "Hello"}) == 1
        assert not waffle.is_default("GREETING")
    later = redeployed(database_url, GREETING={"default": "Bonjour"})
    async with later.connected():
        assert later.get("GREETING") == "Hello"


async def test_resetting_a_default_changes_nothing(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        assert await waffle.reset(["GREETING", "THEME"]) == 0
        assert await waffle.history() == []
        with pytest.raises(InvalidValueError) as caught:
            await waffle.reset(["GREETING", "NOPE"])
        assert caught.value.errors == {"NOPE": "unknown setting"}
        with pytest.raises(InvalidValueError, match="no settings given"):
            await waffle.reset([])


async def test_a_conflict_on_a_reset_key_shows_the_default(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "Hi"})
        await waffle.reset(["GREETING"])
        with pytest.raises(ConflictError) as caught:
            await waffle.update({"GREETING": "late"}, expected_revision=1)
        assert caught.value.current == {"GREETING": "Hello"}
        assert caught.value.revisions == {"GREETING": 2}


async def test_a_tightened_constraint_serves_the_default_and_flags_it(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"MAX_ITEMS": 300})
    later = redeployed(database_url, MAX_ITEMS={"default": 20, "min": 1, "max": 100})
    with caplog.at_level(logging.WARNING, logger="quart_waffle"):
        async with later.connected():
            assert later.get("MAX_ITEMS") == 20
            assert later.is_default("MAX_ITEMS")
            assert later.snapshot.rejected == {"MAX_ITEMS": "must be at most 100"}
            await later.update({"MAX_ITEMS": 50})
            assert later.get("MAX_ITEMS") == 50
            assert not later.is_default("MAX_ITEMS")
            assert dict(later.snapshot.rejected) == {}
    assert "MAX_ITEMS: the stored value no longer fits" in caplog.text


async def test_a_removed_key_is_ignored_and_kept(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"BANNER": {"text": "Sale", "level": "warn"}, "THEME": "dark"})
    without = redeployed(database_url, BANNER=None)
    async with without.connected():
        assert "BANNER" not in without.snapshot.values
        assert without.get("THEME") == "dark"
        assert without.revision == 1
    back = make_waffle(database_url)
    async with back.connected():
        assert back.get("BANNER") == {"text": "Sale", "level": "warn"}


async def test_a_renamed_key_carried_over_by_a_release_declaring_both(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "Hi"})
    both = redeployed(database_url, WELCOME={"default": "Hello"})
    async with both.connected():
        if both.is_default("WELCOME") and not both.is_default("GREETING"):
            await both.update({"WELCOME": both.get("GREETING")}, actor="rename GREETING")
            await both.reset(["GREETING"], actor="rename GREETING")
    renamed = redeployed(database_url, GREETING=None, WELCOME={"default": "Hello"})
    async with renamed.connected():
        assert renamed.get("WELCOME") == "Hi"
        assert not renamed.is_default("WELCOME")


async def test_rows_seeded_by_version_0_1_follow_the_default(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        pass  # tables and the revision counter
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            # what 0.1 wrote at start-up: every default, at revision 0
            await connection.execute(
                insert(settings_table), [{"key": "GREETING", "value": '"Hello"', "revision": 0}]
            )
    finally:
        await engine.dispose()
    later = redeployed(database_url, GREETING={"default": "Bonjour"})
    async with later.connected():
        assert later.get("GREETING") == "Bonjour"
        assert later.is_default("GREETING")
        assert later.revision == 0


def test_json_choices_compare_by_json_text_not_equality() -> None:
    """``True == 1`` and ``1.0 == 1`` in Python, but a JSON document that says
    ``true`` or ``1.0`` is not the choice ``1``."""
    level: Setting[Any] = Setting(
        "LEVEL", cast(Any, 1), type="json", choices=(1, 2, {"a": 1, "b": [True]})
    )
    for refused in (True, 1.0, 2.0, {"a": 1, "b": [1]}, {"a": 1.0, "b": [True]}):
        with pytest.raises(InvalidValueError, match="LEVEL: must be one of 1, 2"):
            level.validate(refused)
    assert level.validate(2) == 2
    assert level.validate({"b": [True], "a": 1}) == {"a": 1, "b": [True]}  # key order is no matter
    ratio = Setting("RATIO", 2.0, choices=(1.5, 2))  # a float setting's choice 2 is 2.0
    assert ratio.validate(2) == 2.0
    with pytest.raises(DeclarationError, match="must be one of 1, 2"):
        Setting("LEVEL", cast(Any, True), type="json", choices=(1, 2))
