"""The sync task's one outage state: which of its parts fail now, each logged
when it begins failing and when it recovers, not once per retry."""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    level: int  # of the line that began it, and of its recovery
    store: bool  # the store is down
    quiet: bool


class Outage:
    """The parts of one task that fail now (``redis sync``, ``scheduled
    work``, ``redis presence``), with the error of each.

    A part that begins failing logs ``<part> failed, retrying: <error>``; its
    retries that fail again only replace the error; its recovery logs
    ``<part> recovered`` at the same level. A store that is down gets one
    warning, from whichever part noticed first: a part that begins failing
    while another fails, either of them because the store is down, logs at
    info. A ``quiet`` part (one whose outage the others report) always logs at
    info and silences nobody.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._failing: dict[str, _Failure] = {}

    def error(self, part: str) -> str | None:
        """What ``part`` fails with now; None when it does not."""
        failure = self._failing.get(part)
        return None if failure is None else failure.message

    def begin(self, part: str, error: str, *, store: bool = False, quiet: bool = False) -> None:
        """``part`` failed with ``error`` (``store``: because the store is down)."""
        failure = self._failing.get(part)
        if failure is None:
            level = self._level(store, quiet)
            self._logger.log(level, "%s failed, retrying: %s", part, error)
        else:
            level, store = failure.level, failure.store or store
        self._failing[part] = _Failure(error, level, store, quiet)

    def end(self, part: str) -> None:
        """``part`` works again; logged if it was failing."""
        failure = self._failing.pop(part, None)
        if failure is not None:
            self._logger.log(failure.level, "%s recovered", part)

    def _level(self, store: bool, quiet: bool) -> int:
        others = [failure for failure in self._failing.values() if not failure.quiet]
        if quiet or (others and (store or any(failure.store for failure in others))):
            return logging.INFO
        return logging.WARNING
