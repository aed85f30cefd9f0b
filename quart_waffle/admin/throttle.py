"""Failed logins counted per client address, so that guessing the token is slow."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 5
"""Failed logins an address may make within :data:`WINDOW` seconds."""
WINDOW = 60.0
_MAX_ADDRESSES = 10_000


class LoginThrottle:
    """This worker's failed logins per client address: after
    :data:`MAX_FAILURES` within :data:`WINDOW` seconds the address is refused
    until the oldest of them is a window old. Memory is bounded: past
    10,000 addresses the least recently failing one is forgotten."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None if it may now."""
        failures = self._recent(address)
        if len(failures) < MAX_FAILURES:
            return None
        return max(1, math.ceil(failures[0] + WINDOW - self._clock()))

    def failed(self, address: str) -> None:
        """Count one failed login from ``address``."""
        failures = self._recent(address)
        failures.append(self._clock())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > _MAX_ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures."""
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address, deque(maxlen=MAX_FAILURES))
        while failures and failures[0] <= self._clock() - WINDOW:
            failures.popleft()
        return failures
