"""The sync task's one outage state: each part logged once when it begins
failing and once when it recovers, at the same level; a store that is down
warned of once, whichever part noticed first; a quiet part (presence) at
info, silencing nobody."""

from __future__ import annotations

import logging

import pytest

from quart_waffle.sync.outage import Outage

WARNING, INFO = logging.WARNING, logging.INFO


@pytest.fixture(name="outage")
def _outage() -> Outage:
    return Outage(logging.getLogger("quart_waffle.test_outage"))


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records]


def test_once_per_outage_not_per_retry(outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(INFO, logger="quart_waffle"):
        outage.begin("redis sync", "redis channel lost: ConnectionError")
        outage.begin("redis sync", "redis channel unreachable: ConnectionError")
        assert outage.error("redis sync") == "redis channel unreachable: ConnectionError"
        outage.end("redis sync")
        outage.end("redis sync")
        assert outage.error("redis sync") is None
    assert logged(caplog) == [
        (WARNING, "redis sync failed, retrying: redis channel lost: ConnectionError"),
        (WARNING, "redis sync recovered"),
    ]


@pytest.mark.parametrize("first_store", [True, False])
def test_a_store_outage_is_warned_of_once(
    first_store: bool, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """Whichever part notices the store down first warns; a part failing
    meanwhile logs at info, and so does its recovery."""
    first, second = (
        ("scheduled work", "postgres sync") if first_store else ("postgres sync", "scheduled work")
    )
    with caplog.at_level(INFO, logger="quart_waffle"):
        outage.begin(first, "down", store=first_store)
        outage.begin(second, "down", store=not first_store)
        outage.end(second)
        outage.end(first)
    assert logged(caplog) == [
        (WARNING, f"{first} failed, retrying: down"),
        (INFO, f"{second} failed, retrying: down"),
        (INFO, f"{second} recovered"),
        (WARNING, f"{first} recovered"),
    ]


def test_failures_of_their_own_each_warn(outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    """Two parts failing for reasons of their own (a dropped table, a lost
    channel): two warnings."""
    with caplog.at_level(INFO, logger="quart_waffle"):
        outage.begin("redis sync", "redis channel lost")
        outage.begin("scheduled work", "no such table")
    assert [level for level, _ in logged(caplog)] == [WARNING, WARNING]


def test_a_quiet_part_logs_at_info_and_silences_nobody(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(INFO, logger="quart_waffle"):
        outage.begin("redis presence", "TimeoutError", quiet=True)
        outage.begin("scheduled work", "StoreUnavailableError", store=True)
        outage.end("redis presence")
    assert logged(caplog) == [
        (INFO, "redis presence failed, retrying: TimeoutError"),
        (WARNING, "scheduled work failed, retrying: StoreUnavailableError"),
        (INFO, "redis presence recovered"),
    ]
