"""Test helpers: :meth:`QuartWaffle.override` serves chosen values in this
process for a block or a test, with no database. The pytest fixture lives
in :mod:`quart_waffle.pytest_plugin`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from .extension import QuartWaffle

F = TypeVar("F", bound=Callable[..., Any])


class Override:
    """Values laid over what a :class:`QuartWaffle` serves while active:
    ``waffle.get``, ``waffle.snapshot`` and (when mirrored) ``app.config``
    see them, whatever the store or another worker changes meanwhile;
    leaving puts back exactly what is served underneath. Validated as a
    write (unknown keys and bad values raise :class:`InvalidValueError` at
    once); nestable, the inner override winning; usable as ``with``,
    ``async with`` and a decorator of sync and async functions.

    Arguments:
        waffle: The extension, registered on its app (no database needed).
        values: Key to value, as :meth:`QuartWaffle.update` takes them.

    Example::

        @waffle.override(MAX_ITEMS=3)
        async def test_short_list(client):
            assert waffle.get("MAX_ITEMS") == 3
    """

    def __init__(self, waffle: QuartWaffle, values: Mapping[str, Any]) -> None:
        encoded = waffle._encode(values)
        self._waffle = waffle
        self._values = {
            key: waffle.declarations[key].decode(text)
            for key, text in encoded.items()
            if text is not None
        }
        self._layers: list[dict[str, Any]] = []

    def __enter__(self) -> Override:
        layer = dict(
            self._values
        )  # one layer per entry: a decorated function may run twice at once
        self._layers.append(layer)
        self._waffle._overrides.append(layer)
        self._mirror(layer)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        layer = self._layers.pop()
        stack = self._waffle._overrides
        # by identity: two equal layers may be active at once
        del stack[next(index for index, item in enumerate(stack) if item is layer)]
        self._mirror(layer)

    async def __aenter__(self) -> Override:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(kind, error, traceback)

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await function(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return cast(F, run)

    def _mirror(self, keys: Mapping[str, Any]) -> None:
        """Show in ``app.config`` what is now served for ``keys``."""
        waffle = self._waffle
        if waffle.app is not None and waffle.config.mirror_config:
            waffle.app.config.update({key: waffle.get(key) for key in keys})
