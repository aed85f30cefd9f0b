"""What every admin view needs: the extension serving the request, and the
path the admin is mounted under."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import Quart, current_app

from ..errors import ConfigurationError
from .throttle import LoginThrottle

if TYPE_CHECKING:
    from ..extension import QuartWaffle

_STATE = "waffle_admin"


_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def mount_path(admin_prefix: str) -> str:
    """``WAFFLE_ADMIN_PREFIX`` as a path: one leading slash, no trailing one.

    Raise :class:`ConfigurationError` for a prefix that is not one or more
    plain path segments: the root (the admin would answer for the whole
    app), empty segments (``//x`` reads as another host in a link), a query,
    percent-escapes or non-ASCII text.
    """
    text = admin_prefix.removeprefix("/").removesuffix("/")
    segments = text.split("/")
    if not text or any(
        _SEGMENT.fullmatch(segment) is None or segment in (".", "..") for segment in segments
    ):
        raise ConfigurationError(
            f"WAFFLE_ADMIN_PREFIX={admin_prefix!r} cannot be where the admin is mounted: use"
            " one or more path segments of ASCII letters, digits and - . _ ~, like '/waffle'"
            " or '/admin/settings' (not the root '/', which is the whole app); set it to ''"
            " to switch the admin off."
        )
    return "/" + text


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


@dataclass
class AdminState:
    """What the admin of one app remembers between requests, in this worker."""

    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    metrics_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    """/metrics' own count: a scraper's wrong tokens never lock the admin out."""
    unavailable_logged_at: float = float("-inf")


def attach_state(app: Quart) -> None:
    """Give ``app``'s admin its own state."""
    app.extensions[_STATE] = AdminState()


def admin_state() -> AdminState:
    """The admin state of the app serving this request."""
    state: AdminState = current_app.extensions[_STATE]
    return state


def login_throttle(*, metrics: bool = False) -> LoginThrottle:
    """The failed logins counted by the app serving this request: the
    admin's, or with ``metrics`` those of its ``/metrics`` endpoint."""
    state = admin_state()
    return state.metrics_throttle if metrics else state.throttle
