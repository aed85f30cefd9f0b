"""Limits that several layers must agree on, each defined once."""

from __future__ import annotations

from datetime import UTC, datetime

MAX_ID = 2**63 - 1
"""The largest id (a scheduled change's, a history entry's) a database column holds."""

TIME_RANGE = "must be from year 1 to 9998 once converted to UTC"
"""Why a time was refused by :func:`in_utc`."""

MAX_BODY_BYTES = 64 * 1024
"""The largest admin request body (JSON or form), and so the largest value it can write."""

MAX_HISTORY_LIMIT = 200
"""The most history entries one admin API page returns."""

MAX_ACTOR_LENGTH = 200
"""Who made a change, as recorded in history: longer names are cut to this."""

MAX_REASON_LENGTH = 500
"""The longest reason a write may carry; a longer one is refused, not cut."""


def in_utc(moment: datetime) -> datetime | None:
    """``moment`` in UTC (UTC when it has no offset), or None when it is, once
    converted, outside years 1 to 9998: the databases hold no more, and
    PostgreSQL refuses a time that its own offset arithmetic pushes past 9999."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        return None
    return moment if 1 <= moment.year <= 9998 else None
