from __future__ import annotations

import pytest
from quart import Quart

from .shop import app as shop_app


@pytest.fixture(name="app")
def _app() -> Quart:
    """The app: the ``waffle_override`` fixture overrides the settings of this one."""
    return shop_app
