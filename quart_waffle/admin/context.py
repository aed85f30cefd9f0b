"""What every admin view needs: the extension serving the request, and the
path the admin is mounted under."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app

if TYPE_CHECKING:
    from ..extension import QuartWaffle


def mount_path(admin_prefix: str) -> str:
    """``WAFFLE_ADMIN_PREFIX`` as a path: one leading slash, no trailing one."""
    return "/" + admin_prefix.strip("/")


def current_waffle() -> QuartWaffle:
    """The extension of the app serving this request."""
    waffle: QuartWaffle = current_app.extensions["waffle"]
    return waffle


def admin_prefix() -> str:
    """The path the admin is mounted under, e.g. ``/waffle``."""
    config = current_waffle().config
    assert config is not None
    assert config.admin_prefix is not None
    return mount_path(config.admin_prefix)
