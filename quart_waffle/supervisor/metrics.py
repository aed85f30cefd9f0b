"""The supervisor's own metrics: reloads (by outcome) and their duration, respawns, workers
by state and the generation served, written in Prometheus' text format to a file
(``serve --metrics-file``) that node_exporter's textfile collector reads.

A file, not a port: it opens nothing to the network, needs no credentials and no dependency
(the format is written here), and the file is replaced atomically, so a reader never sees
half of it. The supervisor also gives its workers a private ``PROMETHEUS_MULTIPROC_DIR``
when the ``metrics`` extra is installed (:func:`multiprocess_directory`), so that the
settings metrics of every worker add up without any setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping

log = logging.getLogger("quart_waffle.supervisor")

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
WRITE_INTERVAL = 5.0
"""Seconds between two writes of the file when nothing happens (workers by state move)."""
RELOAD_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
OUTCOMES = ("succeeded", "failed")
STATES = ("starting", "serving", "draining")

Census = Callable[[], Mapping[str, int]]
"""How many workers are in each state now."""


class PoolObserver:
    """Told the pool's events; every method does nothing here (no ``--metrics-file``)."""

    def reload_started(self) -> None:
        """A rolling reload begins."""

    def reload_finished(self, succeeded: bool) -> None:
        """The reload begun last ended: every worker replaced, or failed (and rolled back)."""

    def respawned(self, workers: int) -> None:
        """``workers`` workers started to replace ones that died or were killed."""


class SupervisorMetrics(PoolObserver):
    """Counts the pool's events and writes them, with the census, to ``path``.

    Arguments:
        path: The file to write (``*.prom`` in node_exporter's textfile directory).
        census: Workers by state now (``starting``, ``serving``, ``draining``).
        generation: The generation served now.

    Example::

        metrics = SupervisorMetrics("/var/lib/node_exporter/quart.prom", census, generation)
        pool.observer = metrics
        metrics.start()  # once serving; metrics.close() when stopping
    """

    def __init__(self, path: str, census: Census, generation: Callable[[], int]) -> None:
        self.path = path
        self._census = census
        self._generation = generation
        self._reloads = dict.fromkeys(OUTCOMES, 0)
        self._buckets = [0] * len(RELOAD_BUCKETS)
        self._duration_sum = 0.0
        self._respawns = 0
        self._reload_began: float | None = None
        self._started = time.time()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def reload_started(self) -> None:
        self._reload_began = time.monotonic()
        self._changed.set()

    def reload_finished(self, succeeded: bool) -> None:
        began, self._reload_began = self._reload_began, None
        self._reloads[OUTCOMES[0] if succeeded else OUTCOMES[1]] += 1
        if began is not None:
            seconds = time.monotonic() - began
            self._duration_sum += seconds
            for index, bound in enumerate(RELOAD_BUCKETS):
                if seconds <= bound:
                    self._buckets[index] += 1
        self._changed.set()

    def respawned(self, workers: int) -> None:
        self._respawns += workers
        self._changed.set()

    def render(self) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        census = self._census()
        reloads = sum(self._reloads.values())
        lines = [
            *_family(
                "quart_waffle_supervisor_reloads_total",
                "counter",
                "Rolling reloads that ended, by outcome (failed ones were rolled back).",
            ),
            *(
                f'quart_waffle_supervisor_reloads_total{{outcome="{outcome}"}} {count}'
                for outcome, count in self._reloads.items()
            ),
            *_family(
                "quart_waffle_supervisor_reload_duration_seconds",
                "histogram",
                "Seconds from a reload's start to its end, whatever the outcome.",
            ),
            *(
                f'quart_waffle_supervisor_reload_duration_seconds_bucket{{le="{bound:g}"}} {count}'
                for bound, count in zip(RELOAD_BUCKETS, self._buckets, strict=True)
            ),
            f'quart_waffle_supervisor_reload_duration_seconds_bucket{{le="+Inf"}} {reloads}',
            f"quart_waffle_supervisor_reload_duration_seconds_sum {self._duration_sum:.6f}",
            f"quart_waffle_supervisor_reload_duration_seconds_count {reloads}",
            *_family(
                "quart_waffle_supervisor_reload_in_progress",
                "gauge",
                "1 while a rolling reload runs, else 0.",
            ),
            f"quart_waffle_supervisor_reload_in_progress {int(self._reload_began is not None)}",
            *_family(
                "quart_waffle_supervisor_respawns_total",
                "counter",
                "Workers started to replace workers that died or were killed as hung.",
            ),
            f"quart_waffle_supervisor_respawns_total {self._respawns}",
            *_family("quart_waffle_supervisor_workers", "gauge", "Workers by state."),
            *(
                f'quart_waffle_supervisor_workers{{state="{state}"}} {census.get(state, 0)}'
                for state in STATES
            ),
            *_family(
                "quart_waffle_supervisor_generation",
                "gauge",
                "The generation served: that of the last reload that succeeded.",
            ),
            f"quart_waffle_supervisor_generation {self._generation()}",
            *_family(
                "quart_waffle_supervisor_start_time_seconds",
                "gauge",
                "When the supervisor started, in seconds since the epoch.",
            ),
            f"quart_waffle_supervisor_start_time_seconds {self._started:.3f}",
        ]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Replace the file at once (a reader sees the old or the new one, never half)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        descriptor, temporary = tempfile.mkstemp(prefix=".quart-waffle-", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(self.render())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    async def export(self, interval: float = WRITE_INTERVAL) -> None:
        """Write the file now, after every event and every ``interval`` seconds, until
        cancelled. A failed write is logged and tried again."""
        while True:
            self._changed.clear()
            try:
                self.write()
            except OSError as error:
                log.warning("Cannot write the metrics file %s: %s", self.path, error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()

    def start(self) -> None:
        """Start writing the file in the background (:meth:`export`)."""
        self._task = asyncio.create_task(self.export(), name="quart-waffle-metrics-file")

    def close(self) -> None:
        """Stop writing in the background, and write the file a last time if it can be."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(OSError):
            self.write()


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str | None]:
    """Give the workers a fresh private ``PROMETHEUS_MULTIPROC_DIR`` (0700, removed on
    exit) when ``prometheus_client`` is installed and none is set; yields the directory
    the workers use, or None. A directory the caller set is used as it is."""
    given = os.environ.get(MULTIPROC_DIR)
    if given or importlib.util.find_spec("prometheus_client") is None:
        yield given or None
        return
    directory = tempfile.mkdtemp(prefix="quart-waffle-metrics-")
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)
