"""The admin: a JSON API and a web page under ``WAFFLE_ADMIN_PREFIX``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart

if TYPE_CHECKING:
    from ..extension import QuartWaffle


def register_admin(app: Quart, waffle: QuartWaffle) -> None:
    """Mount the admin on ``app`` under ``waffle.config.admin_prefix``."""
    del app, waffle
