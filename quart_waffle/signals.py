"""Signals quart-waffle sends in each worker."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

settings_changed = _signals.signal("waffle-settings-changed")
"""Sent in a serving worker after it applies values that differ from the ones
it served, made by itself or heard from another worker; with sender the app and
keyword arguments ``revision`` (int) and ``changes`` (key to (old, new)). Not
sent for the values loaded at start-up, nor inside ``waffle.connected()``
(scripts and ``quart waffle`` commands). Receivers may be sync or async functions.

Example::

    @settings_changed.connect_via(app)
    async def on_change(app, revision, changes):
        app.logger.info("now at revision %d: %s", revision, sorted(changes))
"""
