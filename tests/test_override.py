"""waffle.override and the pytest plugin: the sample suite in
examples/override_suite passes under a separate pytest, and an override
never goes stale while the store changes underneath (real SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from harness import ROOT
from quart_waffle.errors import InvalidValueError
from tests.helpers import make_waffle, worker_pair


def test_the_sample_suite_passes() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins.get("quart_waffle") == "quart_waffle.pytest_plugin"
    suite = ROOT / "examples" / "override_suite"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed" in result.stdout


async def test_never_stale_and_restored_exactly(database_url: str) -> None:
    here, other = worker_pair(database_url)
    assert here.app is not None
    async with here.connected(), other.connected():
        with here.override(MAX_ITEMS=3, BANNER={"text": "t", "level": "info"}):
            await other.update({"MAX_ITEMS": 9, "GREETING": "Hi"})
            await here.refresh()
            assert (here.get("MAX_ITEMS"), here.app.config["MAX_ITEMS"]) == (3, 3)
            assert here.snapshot.values["BANNER"]["text"] == "t"
            assert here.get("GREETING") == "Hi"  # keys not overridden follow the store
            await here.update({"MAX_ITEMS": 11})  # a write here is stored, still overridden
            assert here.app.config["MAX_ITEMS"] == 3
        assert (here.get("MAX_ITEMS"), here.app.config["MAX_ITEMS"]) == (11, 11)
        assert here.app.config["BANNER"] == {"text": "", "level": "info"}
        assert not here.is_default("GREETING")


async def test_concurrent_decorated_calls_and_no_database() -> None:
    waffle = make_waffle("sqlite:////nonexistent/never-opened.db")
    seen: list[int] = []

    @waffle.override(MAX_ITEMS=4)
    async def check() -> None:
        await asyncio.sleep(0.01)
        seen.append(waffle.get("MAX_ITEMS"))

    await asyncio.gather(check(), check())
    assert seen == [4, 4]
    assert waffle.get("MAX_ITEMS") == 20
    with pytest.raises(InvalidValueError, match="THEME"):
        waffle.override(THEME="pink")
