"""The bounds of every numeric option of `serve` and `reload`, and their parsers.

A number is ASCII digits as a person types them (`quart_waffle.kinds`), finite, within its
option's bounds: no ``inf``, ``nan``, negative timeouts or a backlog the kernel cannot take.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from ..kinds import parse_integer, parse_number

Bounds = tuple[float, float]
N = TypeVar("N", int, float)

MAX_SECONDS = 86400.0  # a day: longer waits are typing mistakes
SECONDS: Bounds = (0.001, MAX_SECONDS)
WORKERS: Bounds = (1, 1024)
MAX_LIFETIME = 30 * MAX_SECONDS  # a worker may live for a month

RANGES: dict[str, Bounds] = {
    "workers": WORKERS,
    "max_surge": (0, WORKERS[1]),
    "graceful_timeout": SECONDS,
    "keep_alive_timeout": SECONDS,
    "startup_timeout": SECONDS,
    "timeout": (0.0, MAX_SECONDS),  # 0: no liveness check
    "backlog": (1, 65535),
    "max_requests": (0, 999_999),  # 0: never
    "max_requests_jitter": (0, 999_999),
    "max_worker_lifetime": (0.0, MAX_LIFETIME),  # 0: never
    "max_worker_lifetime_jitter": (0.0, MAX_LIFETIME),
}
"""`ServeConfig` fields and their bounds, both ends included."""

MIN_ACTIVE: Bounds = (0, WORKERS[1])
RELOAD_TIMEOUT: Bounds = SECONDS


def out_of_range(value: float, bounds: Bounds) -> str | None:
    """Why `value` is not a number within `bounds`, or None when it is (NaN never is)."""
    low, high = bounds
    if low <= value <= high:
        return None
    return f"must be from {low:g} to {high:g}, got {value}"


def number_option(bounds: Bounds) -> Callable[[str], float]:
    """An argparse ``type``: a number within `bounds`."""
    return _option(parse_number, bounds)


def integer_option(bounds: Bounds) -> Callable[[str], int]:
    """An argparse ``type``: an integer within `bounds`."""
    return _option(parse_integer, bounds)


def _option(parse: Callable[[str], N], bounds: Bounds) -> Callable[[str], N]:
    def parse_option(text: str) -> N:
        try:
            value = parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if problem := out_of_range(value, bounds):
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse_option
