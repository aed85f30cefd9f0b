"""The pytest plugin of quart-waffle (registered as ``pytest11``): the
``waffle_override`` fixture. It imports quart-waffle only when a test uses
the fixture, so it costs other suites nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest


@pytest.fixture(name="waffle_override")
def _waffle_override(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """A function ``waffle_override(target=None, **values)`` that overrides
    settings until the test ends (see :meth:`QuartWaffle.override`).
    ``target`` is a Quart app or a ``QuartWaffle``; by default the suite's
    ``app`` fixture.

    Example::

        def test_maintenance(app, waffle_override):
            waffle_override(MAINTENANCE=True)
            assert app.config["MAINTENANCE"] is True
    """
    from quart import Quart

    from .extension import QuartWaffle

    with ExitStack() as stack:

        def override(target: Any = None, /, **values: Any) -> None:
            if target is None:
                try:
                    target = request.getfixturevalue("app")
                except pytest.FixtureLookupError:
                    raise TypeError(
                        "waffle_override: pass the app, waffle_override(app, KEY=value),"
                        " or define an `app` fixture"
                    ) from None
            waffle = target.extensions.get("waffle") if isinstance(target, Quart) else target
            if not isinstance(waffle, QuartWaffle):
                raise TypeError("waffle_override: the target is no app with QuartWaffle on it")
            stack.enter_context(waffle.override(**values))

        yield override
