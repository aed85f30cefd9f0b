"""How often the runner may act: reconnection delays."""

from __future__ import annotations

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
