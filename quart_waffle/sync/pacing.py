"""How often the runner may act: reconnection delays and catch-up spacing."""

from __future__ import annotations

import math
import random


class Backoff:
    """Bounded exponential delays with jitter: 0.1 s doubling up to ``cap``."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class Pacing:
    """At most ``burst`` catch-ups at once, then one every ``spacing`` seconds.

    A lone hint is answered at once; a flood of hints is answered by one
    catch-up per ``spacing`` (a generic cell rate algorithm, on loop time).
    """

    def __init__(self, spacing: float, burst: int) -> None:
        self.spacing = spacing
        self._slack = spacing * max(0, burst - 1)
        self._due = -math.inf  # when the budget is full again, in loop time

    def ready_at(self, now: float) -> float:
        """The earliest time, from ``now`` on, a catch-up may start."""
        return max(now, self._due - self._slack)

    def record(self, now: float) -> None:
        """A catch-up started at ``now``."""
        self._due = max(self._due, now) + self.spacing
