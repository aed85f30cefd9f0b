"""Signals quart-waffle sends in each worker."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

settings_changed = _signals.signal("waffle-settings-changed")
"""Sent in each worker after it applies new values, with sender the app and
keyword arguments ``revision`` (int) and ``changes`` (key to (old, new)).
Receivers may be sync or async functions.

Example::

    @settings_changed.connect_via(app)
    async def on_change(app, revision, changes):
        app.logger.info("now at revision %d: %s", revision, sorted(changes))
"""
