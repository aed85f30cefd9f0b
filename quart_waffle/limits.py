"""Limits that several layers must agree on, each defined once."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024
"""The largest admin request body (JSON or form), and so the largest value it can write."""

MAX_HISTORY_LIMIT = 200
"""The most history entries one admin API page returns."""

MAX_ACTOR_LENGTH = 200
"""Who made a change, as recorded in history: longer names are cut to this."""

MAX_REASON_LENGTH = 500
"""The longest reason a write may carry; a longer one is refused, not cut."""
