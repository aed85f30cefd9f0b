"""The fleet view and acknowledged writes at scale, with the fleet simulator
of :mod:`benchmarks.fleet` (P processes x K QuartWaffle instances on the
Redis channel, each reporting its presence exactly as a worker does).

python -m benchmarks.fleet_wait                       # 256 workers, 10 updates, 60 s idle
python -m benchmarks.fleet_wait --workers 64 --idle 20

Printed, all measured in the same run:

- ``wait``: per update, the time ``waffle.update(..., wait=10)`` took to
  return with every worker acknowledged, against the propagation time (the
  moment the last instance applied it, as the instances themselves recorded
  it); target: wait within 2x of propagation.
- the fleet view: how long one ``waffle.fleet()`` takes (read and judge every record).
- presence writes per worker per minute while idle: the Redis hash (counted
  from the records' heartbeats, sampled twice a second), and the database
  table (``waffle_presence``, what the ``postgres`` and ``none`` channels use:
  K instances on SQLite, counted by the backend); target: at most 1 store
  write per worker per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from quart import Quart

from harness import missing_reason
from quart_waffle import QuartWaffle

from .common import BenchConfig, Section, workspace
from .fleet import CONFS, fleet_processes, fleet_results, served_by_all, waffle_for

WAIT = 10.0
"""Seconds a write waits for the fleet at most."""
GAP = 0.3
"""Seconds between two updates."""


@dataclass
class Figures:
    workers: int
    wait_ms: list[float]
    propagation_ms: list[float]
    acknowledged: str
    fleet_view_ms: float
    redis_writes_per_minute: float
    table_writes_per_minute: float
    table_workers: int
    idle_seconds: float

    @property
    def ratio(self) -> float:
        """Median of wait / propagation per update."""
        return statistics.median(
            wait / propagation
            for wait, propagation in zip(self.wait_ms, self.propagation_ms, strict=True)
            if propagation > 0
        )

    def lines(self) -> list[str]:
        wait, propagation = statistics.median(self.wait_ms), statistics.median(self.propagation_ms)
        return [
            "| workers | wait p50 ms | wait max ms | propagation p50 ms | propagation max ms"
            " | wait / propagation (median) | acknowledged | fleet view ms |",
            "|---|---|---|---|---|---|---|---|",
            f"| {self.workers} | {wait:.1f} | {max(self.wait_ms):.1f} | {propagation:.1f}"
            f" | {max(self.propagation_ms):.1f} | {self.ratio:.2f}x | {self.acknowledged}"
            f" | {self.fleet_view_ms:.1f} |",
            "",
            "| presence store | workers | idle s | writes per worker per minute |",
            "|---|---|---|---|",
            f"| Redis hash (no database) | {self.workers} | {self.idle_seconds:.0f}"
            f" | {self.redis_writes_per_minute:.2f} |",
            f"| database table (postgres, none) | {self.table_workers}"
            f" | {self.idle_seconds:.0f} | {self.table_writes_per_minute:.2f} |",
        ]


async def hash_writes(waffle: QuartWaffle, seconds: float) -> tuple[int, int]:
    """(workers, writes) seen in the presence hash over ``seconds``: a write
    changes a record's heartbeat, and none is missed at two samples a second
    while heartbeats are seconds apart."""
    backend = waffle._connected().fleet.backend
    seen: dict[str, set[float]] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for record in await backend.read(forget_after=3600, now=time.time()):
            seen.setdefault(record.id, set()).add(record.heartbeat)
        await asyncio.sleep(0.5)
    return len(seen), sum(len(beats) - 1 for beats in seen.values())


async def table_writes(directory: Path, instances: int, seconds: float) -> float:
    """Presence writes per worker per minute of ``instances`` idle workers
    whose records live in the database (SQLite, the ``none`` channel)."""
    url = f"sqlite:///{directory / 'table.db'}"
    waffles = []
    for _ in range(instances):
        app = Quart("fleet-table")
        app.config["WAFFLE_CONFS"] = CONFS
        waffles.append(QuartWaffle(app, database_url=url, watchtype="none", admin_prefix=""))
    for waffle in waffles:
        await waffle.start(watch=True, announce=False)
    try:
        await asyncio.sleep(2.0)  # each wrote its first record
        backends = [waffle._connected().fleet.backend for waffle in waffles]
        before = sum(backend.writes for backend in backends)
        await asyncio.sleep(seconds)
        after = sum(backend.writes for backend in backends)
    finally:
        await asyncio.gather(*(waffle.stop() for waffle in waffles))
    return (after - before) / instances / (seconds / 60)


async def measure(workers: int, updates: int, idle: float, directory: Path) -> Figures:
    channel = f"fleet-wait-{os.urandom(4).hex()}"
    url = f"sqlite:///{directory / 'fleet.db'}"
    writer = waffle_for(url, channel, "carried")
    await writer.start(watch=False, announce=False)
    try:
        async with fleet_processes(workers, url, channel, "carried") as children:
            deadline = time.monotonic() + 60
            while len((await writer.fleet()).live) < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fleet did not report every worker within 60 s")
                await asyncio.sleep(0.2)
            views = []
            for _ in range(5):
                started = time.perf_counter()
                await writer.fleet()
                views.append((time.perf_counter() - started) * 1000)

            # idle first: nothing changes, so only heartbeats write
            idle_task = asyncio.create_task(hash_writes(writer, idle))
            table_rate = await table_writes(directory, min(64, workers), idle)
            seen, writes = await idle_task
            redis_rate = writes / max(seen, 1) / (idle / 60)

            sent: dict[int, float] = {}
            waits: list[float] = []
            complete = 0
            for number in range(updates):
                started = time.time()
                ack = await writer.update({"MAX_ITEMS": 100 + number}, wait=WAIT)
                waits.append((time.time() - started) * 1000)
                sent[ack.revision] = started
                complete += ack.complete and ack.expected == workers
                await asyncio.sleep(GAP)
            applied: list[list[tuple[int, float]]] = []
            for result in await fleet_results(children):
                applied.extend(result["applied"])
    finally:
        await writer.stop()
    propagation = [
        ((served_by_all(applied, revision) or float("nan")) - started) * 1000
        for revision, started in sent.items()
    ]
    return Figures(
        workers,
        waits,
        propagation,
        f"{complete}/{updates}",
        statistics.median(views),
        redis_rate,
        table_rate,
        min(64, workers),
        idle,
    )


async def run(config: BenchConfig) -> Section:
    """The fleet-wait section of ``python -m benchmarks``."""
    section = Section("Fleet: acknowledged writes and presence cost at 256 workers")
    reason = missing_reason("Redis")
    if reason is not None:
        section.skip(reason)
        return section
    quick = config.updates < 50
    figures = await measure(
        256, 5 if quick else 10, 20.0 if quick else 60.0, workspace(config, "fleet_wait")
    )
    for line in figures.lines():
        print(line, flush=True)
        section.lines.append(line)
    section.note(
        "wait: update(..., wait=10) from its call until every worker acknowledged;"
        " propagation: from the same call until the last instance applied it (the"
        f" instances' own clocks); target wait <= 2x propagation, measured"
        f" {figures.ratio:.2f}x; presence target <= 1 database write per worker per minute"
        f" idle, measured {figures.table_writes_per_minute:.2f} (the Redis hash costs no"
        " database and heartbeats every 5 s)"
    )
    section.data["fleet_wait"] = figures
    return section


async def main(arguments: argparse.Namespace) -> None:
    reason = missing_reason("Redis")
    if reason is not None:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory(prefix="waffle-fleet-wait-") as directory:
        figures = await measure(
            arguments.workers, arguments.updates, arguments.idle, Path(directory)
        )
    for line in figures.lines():
        print(line)
    verdict = "met" if figures.ratio <= 2 else "MISSED"
    print(f"\nwait / propagation: {figures.ratio:.2f}x (target <= 2x: {verdict})")
    table = figures.table_writes_per_minute
    print(
        f"database presence writes per worker per minute idle: {table:.2f}"
        f" (target <= 1: {'met' if table <= 1 else 'MISSED'})"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_wait", description=__doc__)
    parser.add_argument("--workers", type=int, default=256, help="simulated workers")
    parser.add_argument("--updates", type=int, default=10, help="updates that wait")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
