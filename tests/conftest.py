from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart.typing import TestClientProtocol

from harness import IN_CI, fresh_database, missing_reason
from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, make_waffle, serving_admin, sqlite_threads_stopped


def require(service: str) -> None:
    """Skip (or, under CI=true, fail) the test when ``service`` is missing."""
    reason = missing_reason(service)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="postgres_url")
async def _postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require("PostgreSQL")
    async with fresh_database() as url:
        yield url


@pytest.fixture(name="sqlite_url")
def _sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'waffle.db'}"


@pytest.fixture(name="database_url", params=["sqlite", "postgres"])
def _database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on real SQLite and once on real PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(name="waffle")
async def _served_waffle(sqlite_url: str) -> AsyncIterator[QuartWaffle]:
    """A serving app on SQLite with the admin on (bearer ADMIN_TOKEN, a
    SECRET_KEY for the page's session)."""
    waffle = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    async with serving_admin(waffle):
        yield waffle


@pytest.fixture(name="client")
def _client(waffle: QuartWaffle) -> TestClientProtocol:
    assert waffle.app is not None
    return waffle.app.test_client()


@pytest.fixture(autouse=True)
def _no_waffle_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure quart-waffle explicitly, never through the caller's shell."""
    for key in list(os.environ):
        if key.startswith("WAFFLE_") and not key.startswith("WAFFLE_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
async def _sqlite_threads_end_in_their_test() -> AsyncIterator[None]:
    """Each test's aiosqlite threads end while its event loop is still open."""
    yield
    await sqlite_threads_stopped(within=1.0)
