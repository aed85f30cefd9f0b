"""The fleet simulator: P processes x K QuartWaffle instances, each with its own
engine and channel exactly as a worker has them, one writer; for each update,
the time until every instance applied it.

python -m benchmarks.fleet                       # SQLite 32/128/256, PostgreSQL 160
python -m benchmarks.fleet --sizes 64 --updates 10 --stores sqlite

Each size runs twice in the same run: ``carried`` (changes in a signed
message, applied with no database round trip) and ``hint`` (no sync key: the
bare hint then a catch-up from the store, the 0.1 path). Printed per row:
p50/p90/max to all workers, CPU per worker per change, database transactions
per change (PostgreSQL: ``pg_stat_database.xact_commit``) and database
connections held while idle (``pg_stat_activity``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from quart import Quart

from harness import POSTGRES_URL, REDIS_URL, fresh_database, missing_reason
from quart_waffle import QuartWaffle, settings_changed

from .common import BenchConfig, Section, workspace

CONFS = {"GREETING": {"default": "Hello"}, "MAX_ITEMS": {"default": 20}}
SYNC_KEY = "fleet-benchmark-key"
PROCESSES = 8
MODES = ("carried", "hint")
PROFILE_VARIABLE = "WAFFLE_FLEET_PROFILE"
"""A directory: each fleet process writes its cProfile statistics there."""
GAP = 0.25  # seconds between two updates: every worker has applied the last one
GAP_PER_WORKER = 0.001  # larger fleets take longer: seconds of gap per worker, at least GAP
SETTLE_GAPS = 4  # after the last update, this many gaps for it to reach every instance
LARGE_FLEET = 1_000
LARGE_FLEET_UPDATES = 5


def waffle_for(database_url: str, channel: str, mode: str) -> QuartWaffle:
    app = Quart("fleet")
    app.config["WAFFLE_CONFS"] = CONFS
    return QuartWaffle(
        app,
        database_url=database_url,
        watchtype="redis",
        redis_url=REDIS_URL,
        redis_channel=channel,
        sync_key=SYNC_KEY if mode == "carried" else None,
        admin_prefix="",
        check_interval=30.0,
    )


async def worker_process(instances: int, database_url: str, channel: str, mode: str) -> None:
    """K instances in this process; prints "ready", then on a line on stdin
    prints, per instance, the (revision, time) of each change it applied, and
    this process's CPU seconds."""
    applied: list[list[tuple[int, float]]] = [[] for _ in range(instances)]
    waffles = [waffle_for(database_url, channel, mode) for _ in range(instances)]

    def recorder(index: int) -> Callable[..., Awaitable[None]]:
        async def record(_app: Any, *, revision: int, **_extra: Any) -> None:
            applied[index].append((revision, time.time()))

        return record

    for index, waffle in enumerate(waffles):
        settings_changed.connect(recorder(index), waffle.app, weak=False)
    await asyncio.gather(*(waffle.start(watch=True, announce=True) for waffle in waffles))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    profile_to = os.environ.get(PROFILE_VARIABLE)
    profiler = cProfile.Profile() if profile_to else None
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    await loop.run_in_executor(None, sys.stdin.readline)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(Path(profile_to or ".") / f"fleet-{os.getpid()}.prof")
    cpu = time.process_time() - cpu
    print(json.dumps({"applied": applied, "cpu": cpu}), flush=True)
    await asyncio.gather(*(waffle.stop() for waffle in waffles))


def gap_for(workers: int) -> float:
    """Seconds between two updates to a fleet of ``workers``."""
    return max(GAP, workers * GAP_PER_WORKER)


def served_by_all(applied: list[list[tuple[int, float]]], revision: int) -> float | None:
    """When the last instance came to serve ``revision`` or a later one (a
    catch-up may apply several revisions at once); None if one never did."""
    firsts = [
        min((at for applied_revision, at in changes if applied_revision >= revision), default=None)
        for changes in applied
    ]
    if not firsts or any(first is None for first in firsts):
        return None
    return max(first for first in firsts if first is not None)


@dataclass
class Row:
    store: str
    workers: int
    mode: str
    update_ms: float
    p50: float
    p90: float
    worst: float
    complete: str
    cpu_ms: float
    transactions: float | None
    idle: int | None
    load: float = 0.0  # 1-minute load average when the row started

    @property
    def every_update_applied(self) -> bool:
        """Whether every update reached every instance."""
        served, _, sent = self.complete.partition("/")
        return served == sent

    def line(self) -> str:
        transactions = "-" if self.transactions is None else f"{self.transactions:.1f}"
        idle = "-" if self.idle is None else str(self.idle)
        return (
            f"| {self.store} | {self.workers} | {self.mode} | {self.update_ms:.1f}"
            f" | {self.p50:.1f} | {self.p90:.1f}"
            f" | {self.worst:.1f} | {self.complete} | {self.cpu_ms:.2f} | {transactions}"
            f" | {idle} | {self.load:.2f} |"
        )


HEADER = (
    "| store | workers | path | update ms | p50 ms | p90 ms | max ms | applied"
    " | CPU ms/worker/change | DB xacts/change | idle DB conns | load |"
    "\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@asynccontextmanager
async def fleet_processes(
    workers: int, database_url: str, channel: str, mode: str
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``workers`` simulated workers spread over up to ``PROCESSES`` child processes
    (``--worker``), each of which said ``ready``; on exit, each is waited for (killed after
    30 s)."""
    processes = min(PROCESSES, workers)
    per_process = [workers // processes + (i < workers % processes) for i in range(processes)]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "benchmarks.fleet", "--worker", str(count), database_url, channel, mode),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for count in per_process
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 120)
            if line.strip() != b"ready":
                raise RuntimeError(f"a fleet process did not start: {line!r}")
        yield children
    finally:
        for child in children:
            if child.returncode is None:
                try:
                    await asyncio.wait_for(child.wait(), 30)
                except TimeoutError:
                    child.kill()


async def fleet_results(children: list[asyncio.subprocess.Process]) -> list[dict[str, Any]]:
    """Tell each fleet process it is done; what each reported (``cpu``, ``applied``)."""
    results = []
    for child in children:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(b"done\n")
        await child.stdin.drain()
        results.append(json.loads(await asyncio.wait_for(child.stdout.readline(), 60)))
    return results


async def pg_figures(url: str) -> tuple[int, int]:
    """(committed transactions, connections other than ours) of ``url``'s database."""
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await asyncio.sleep(1.2)  # backends report their statistics within a second
        commits = await admin.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database
        )
        connections = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        )
        return int(commits), int(connections)
    finally:
        await admin.close()


async def run_fleet(store: str, database_url: str, workers: int, mode: str, updates: int) -> Row:
    load = os.getloadavg()[0]
    channel = f"fleet-{os.urandom(4).hex()}"
    writer = waffle_for(database_url, channel, mode)
    await writer.start(watch=False, announce=False)  # creates the tables first
    try:
        async with fleet_processes(workers, database_url, channel, mode) as children:
            await asyncio.sleep(1.0)
            before = await pg_figures(database_url) if store == "postgres" else None
            sent: dict[int, float] = {}
            writes: list[float] = []
            for number in range(updates):
                started = time.time()
                revision = await writer.update({"MAX_ITEMS": 100 + number})
                sent[revision] = time.time()  # the update returned: committed and announced
                writes.append((sent[revision] - started) * 1000)
                await asyncio.sleep(gap_for(workers))
            await asyncio.sleep(gap_for(workers) * SETTLE_GAPS)
            after = await pg_figures(database_url) if store == "postgres" else None
            applied: list[list[tuple[int, float]]] = []
            cpu = 0.0
            for result in await fleet_results(children):
                cpu += result["cpu"]
                applied.extend(result["applied"])
    finally:
        await writer.stop()
    delays = [
        (last - started) * 1000
        for revision, started in sent.items()
        if (last := served_by_all(applied, revision)) is not None
    ]
    complete = f"{len(delays)}/{len(sent)}"
    delays = delays or [float("nan")]
    quantiles = (
        statistics.quantiles(delays, n=10, method="inclusive") if len(delays) > 1 else delays * 9
    )
    transactions = None
    idle = None
    if before is not None and after is not None:
        # minus our own two statistics reads
        transactions = (after[0] - before[0] - 1) / updates
        idle = before[1]
    return Row(
        store,
        workers,
        mode,
        statistics.median(writes),
        statistics.median(delays),
        quantiles[8],
        max(delays),
        complete,
        cpu / workers / updates * 1000,
        transactions,
        idle,
        load,
    )


async def fleets(
    stores: list[str],
    sizes: list[int] | None,
    updates: int,
    directory: Path,
    modes: tuple[str, ...] = MODES,
) -> AsyncIterator[Row]:
    """Each fleet, carried then hint, as it is measured."""
    for store in stores:
        if store == "postgres" and missing_reason("PostgreSQL") is not None:
            continue
        for workers in sizes or ([32, 128, 256] if store == "sqlite" else [160]):
            for mode in modes:
                if store == "sqlite":
                    url = f"sqlite:///{directory / f'{workers}-{mode}.db'}"
                    yield await run_fleet(store, url, workers, mode, updates)
                else:
                    async with fresh_database("waffle_fleet") as url:
                        yield await run_fleet(store, url, workers, mode, updates)


async def run(config: BenchConfig) -> Section:
    """The fleet section of ``python -m benchmarks``."""
    section = Section("Fleet: P processes x K instances, carried changes against the 0.1 path")
    reason = missing_reason("Redis")
    if reason is not None:
        section.skip(reason)
        return section
    section.lines.append(HEADER)
    updates = max(5, min(config.updates, 20))
    rows: list[Row] = []
    section.data["fleet"] = rows
    async for row in fleets(["sqlite", "postgres"], None, updates, workspace(config, "fleet")):
        print(row.line(), flush=True)
        section.lines.append(row.line())
        rows.append(row)
    # the largest fleet where the machine allows it: carried only, a few updates
    with tempfile.TemporaryDirectory(prefix="waffle-fleet-") as directory:
        url = f"sqlite:///{Path(directory) / 'large.db'}"
        try:
            row = await run_fleet("sqlite", url, LARGE_FLEET, "carried", LARGE_FLEET_UPDATES)
        except Exception as error:  # file descriptors, Redis clients, start-up time
            section.note(f"{LARGE_FLEET:,} workers did not run: {type(error).__name__}: {error}")
        else:
            print(row.line(), flush=True)
            section.lines.append(row.line())
            rows.append(row)
    section.lines.append("")
    section.note(
        f"{updates} updates per fleet ({LARGE_FLEET_UPDATES} at {LARGE_FLEET:,} workers),"
        f" {GAP * 1000:.0f} ms apart or {GAP_PER_WORKER * 1000:g} ms per worker if longer,"
        f" and {SETTLE_GAPS} such gaps after the last; times from the update's"
        " return to the last instance applying it; 'hint' is the 0.1 path (bare hint, then"
        " every worker reads the store); 'load' is the 1-minute load average when the row"
        " started (2 cores)"
    )
    return section


async def main(arguments: argparse.Namespace) -> None:
    reason = missing_reason("Redis")
    if reason is not None:
        print(f"skipped: {reason}")
        return
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="waffle-fleet-") as directory:
        async for row in fleets(
            arguments.stores,
            arguments.sizes,
            arguments.updates,
            Path(directory),
            tuple(arguments.modes),
        ):
            print(row.line(), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="workers per fleet")
    parser.add_argument("--updates", type=int, default=20, help="updates per fleet")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--stores",
        nargs="*",
        default=["sqlite", "postgres"],
        choices=["sqlite", "postgres"],
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        count, url, channel, mode = sys.argv[2:6]
        asyncio.run(worker_process(int(count), url, channel, mode))
    else:
        asyncio.run(main(parse(sys.argv[1:])))
