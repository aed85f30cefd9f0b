"""The metrics themselves, and the observer that moves them (needs ``prometheus_client``).

Multi-process servers (``hypercorn -w N``, ``quart-waffle serve``) follow
prometheus_client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set
before a worker starts, every worker writes its values to files there, and a
scrape of any worker reads them all. Gauges are ``liveall`` (one sample per
live worker, labelled ``pid``); a worker removes its own when it stops, and a
scrape removes those of workers that died without stopping (killed).
"""

from __future__ import annotations

import os
import re
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..sync.message import Carried
from ..sync.observer import ErrorKind, SyncObserver

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
ERROR_KINDS = ("channel", "catch_up", "notify", "apply")
PROPAGATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REVISION = Gauge(
    "quart_waffle_revision",
    "The settings revision this worker serves.",
    multiprocess_mode="liveall",
)
LAG = Gauge(
    "quart_waffle_revision_lag",
    "Revisions between the newest this worker has heard of and the one it serves.",
    multiprocess_mode="liveall",
)
CHANNEL_UP = Gauge(
    "quart_waffle_channel_up",
    "1 while this worker's sync channel is connected, else 0.",
    multiprocess_mode="liveall",
)
CATCH_UPS = Counter(
    "quart_waffle_catch_ups",
    "Catch-ups from the store run by the sync task (hints, reconnections, periodic checks).",
)
APPLIED_DIRECTLY = Counter(
    "quart_waffle_changes_applied_directly",
    "Changes applied from the values their message carried, with no database round trip.",
)
ERRORS = Counter(
    "quart_waffle_sync_errors",
    "Sync failures, by kind: channel, catch_up, notify, apply.",
    ["kind"],
)
PROPAGATION = Histogram(
    "quart_waffle_propagation_seconds",
    "Seconds from a change's message being sent to this worker applying it from the message.",
    buckets=PROPAGATION_BUCKETS,
)
for _kind in ERROR_KINDS:
    ERRORS.labels(_kind)  # every kind shows, at 0, from the start

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


class PrometheusObserver(SyncObserver):
    """Moves the metrics above for one worker's sync."""

    def __init__(self) -> None:
        self._served = -1
        self._head = -1
        CHANNEL_UP.set(0)

    def served(self, revision: int) -> None:
        self._served = revision
        self._head = max(self._head, revision)
        REVISION.set(revision)
        LAG.set(self._head - revision)

    def heard(self, revision: int) -> None:
        if revision > self._head:
            self._head = revision
            LAG.set(revision - self._served)

    def applied_directly(self, change: Carried) -> None:
        APPLIED_DIRECTLY.inc()
        if change.sent_at:
            PROPAGATION.observe(max(0.0, time.time() - change.sent_at))

    def caught_up(self) -> None:
        # the store's newest revision is served now: any newer one is still to be heard of
        CATCH_UPS.inc()
        self._head = self._served
        LAG.set(0)

    def channel(self, up: bool) -> None:
        CHANNEL_UP.set(1 if up else 0)

    def error(self, kind: ErrorKind) -> None:
        ERRORS.labels(kind).inc()

    def closed(self) -> None:
        CHANNEL_UP.set(0)
        path = os.environ.get(MULTIPROC_DIR)
        if path:
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """See :func:`quart_waffle.metrics.exposition`."""
    path = os.environ.get(MULTIPROC_DIR)
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def forget_dead_workers(path: str) -> list[int]:
    """Remove the live gauges of processes that are gone (a worker killed
    before it could remove its own); return their pids. Counters and
    histograms stay: their totals must never go down."""
    dead: set[int] = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match and not _alive(int(match[1])):
            dead.add(int(match[1]))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
