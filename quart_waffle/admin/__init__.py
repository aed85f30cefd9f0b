"""The admin: a JSON API and a web page under ``WAFFLE_ADMIN_PREFIX``.

See ``docs/admin.md``. Both are refused until the app sets
``WAFFLE_ADMIN_TOKEN`` or passes ``authorize=`` to :class:`QuartWaffle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart

from .auth import NOT_CONFIGURED_MESSAGE
from .context import mount_path

if TYPE_CHECKING:
    from ..extension import QuartWaffle


def register_admin(app: Quart, waffle: QuartWaffle) -> None:
    """Mount the admin on ``app`` under ``waffle.config.admin_prefix``."""
    from .api import api
    from .page import page

    assert waffle.config is not None
    assert waffle.config.admin_prefix
    prefix = mount_path(waffle.config.admin_prefix)
    app.register_blueprint(api, url_prefix=prefix)
    app.register_blueprint(page, url_prefix=prefix)


__all__ = ["NOT_CONFIGURED_MESSAGE", "register_admin"]
