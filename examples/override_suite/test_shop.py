"""A sample test suite using quart-waffle's test helpers: no database, no server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quart_waffle.errors import InvalidValueError

from .shop import app, waffle


async def test_defaults() -> None:
    response = await app.test_client().get("/")
    assert await response.get_data(as_text=True) == "Hello: 20 items"


@waffle.override(MAINTENANCE=True)
async def test_maintenance_as_an_async_decorator() -> None:
    response = await app.test_client().get("/")
    assert response.status_code == 503


@waffle.override(MAX_ITEMS=3)
def test_a_sync_decorator() -> None:
    assert waffle.get("MAX_ITEMS") == 3
    assert app.config["MAX_ITEMS"] == 3


async def test_nested_blocks_restore_exactly() -> None:
    with waffle.override(MAX_ITEMS=5, GREETING="Hi"):
        with waffle.override(MAX_ITEMS=6):
            response = await app.test_client().get("/")
            assert await response.get_data(as_text=True) == "Hi: 6 items"
        assert waffle.get("MAX_ITEMS") == 5
    assert (waffle.get("MAX_ITEMS"), app.config["GREETING"]) == (20, "Hello")


def test_values_are_checked_as_a_write_checks_them() -> None:
    with pytest.raises(InvalidValueError, match="MAX_ITEMS: must be at most 500"):
        waffle.override(MAX_ITEMS=501)
    with pytest.raises(InvalidValueError, match="NOPE: unknown setting"):
        waffle.override(NOPE=1)


def test_the_fixture(waffle_override: Callable[..., None]) -> None:
    waffle_override(GREETING="Bonjour")
    assert app.config["GREETING"] == "Bonjour"


def test_the_fixture_undoes_its_override() -> None:
    assert app.config["GREETING"] == "Hello"
