"""Failed logins counted per client network and per worker, so that guessing
the token is slow however many addresses the guesser has."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from enum import Enum

MAX_FAILURES = 5
"""Failed logins a client network may make within :data:`WINDOW` seconds."""
MAX_WORKER_FAILURES = 100
"""Failed logins this worker takes within :data:`WINDOW` seconds from everyone together."""
WINDOW = 60.0
IPV6_PREFIX = 64
"""An IPv6 client is counted by its /64 network: one host is handed a whole /64."""
_MAX_ADDRESSES = 10_000


class LimitReached(Enum):
    """Which limit a failed login reached: logged once, when it is reached."""

    CLIENT = "client"
    WORKER = "worker"


def client_bucket(address: str) -> str:
    """Whom failures are counted against: an IPv4 address (also one mapped
    into IPv6) as it is, an IPv6 address by its /64 network, anything else
    (a Unix socket's name) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class LoginThrottle:
    """This worker's failed logins: after :data:`MAX_FAILURES` within
    :data:`WINDOW` seconds from one client network (:func:`client_bucket`),
    that network is refused until the oldest of them is a window old; after
    :data:`MAX_WORKER_FAILURES` from everyone, every token login is refused
    likewise. Memory is bounded: past 10,000 networks the least recently
    failing one is forgotten."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._worker: deque[float] = deque(maxlen=MAX_WORKER_FAILURES)

    def retry_after(self, address: str) -> tuple[int, LimitReached] | None:
        """Whole seconds until ``address`` may try again and the limit that
        holds it back, or None if it may try now."""
        for failures, limit, reached in (
            (self._recent(client_bucket(address)), MAX_FAILURES, LimitReached.CLIENT),
            (self._prune(self._worker), MAX_WORKER_FAILURES, LimitReached.WORKER),
        ):
            if len(failures) >= limit:
                return max(1, math.ceil(failures[0] + WINDOW - self._clock())), reached
        return None

    def failed(self, address: str) -> LimitReached | None:
        """Count one failed login from ``address``; return the limit it
        reached, if this very failure reached one."""
        bucket = client_bucket(address)
        failures = self._recent(bucket)
        failures.append(self._clock())
        self._failures[bucket] = failures
        self._failures.move_to_end(bucket)
        while len(self._failures) > _MAX_ADDRESSES:
            self._failures.popitem(last=False)
        self._prune(self._worker).append(self._clock())
        if len(self._worker) == MAX_WORKER_FAILURES:
            return LimitReached.WORKER
        return LimitReached.CLIENT if len(failures) == MAX_FAILURES else None

    def succeeded(self, address: str) -> None:
        """Forget the failures of ``address``'s network."""
        self._failures.pop(client_bucket(address), None)

    def _recent(self, bucket: str) -> deque[float]:
        return self._prune(self._failures.get(bucket, deque(maxlen=MAX_FAILURES)))

    def _prune(self, failures: deque[float]) -> deque[float]:
        while failures and failures[0] <= self._clock() - WINDOW:
            failures.popleft()
        return failures
