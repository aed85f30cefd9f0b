"""What the benchmarks share beyond the harness: report sections that print their figures
and degrade to "skipped: reason", percentiles, the run's configuration and work folders,
databases per cell, and servers started from the checkout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import POSTGRES_URL, ROOT, Connection, HttpError, ProcessGroup, fresh_database
from harness import reachable as reachable

RESULTS = ROOT / "benchmarks" / "results"


class Skipped(Exception):
    """A benchmark (or one cell of it) cannot run here; the message says why."""


@dataclass
class Section:
    """One part of the report: Markdown lines, notes, and plot data."""

    title: str
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Add a Markdown table and print it as it is measured."""
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        self.lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
        self.lines.append("")

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def skip(self, reason: str) -> None:
        print(f"  skipped: {reason}", flush=True)
        self.skipped = reason


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation; honest with few samples)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(seconds, 0.50) * 1000,
        "p90": percentile(seconds, 0.90) * 1000,
        "p99": percentile(seconds, 0.99) * 1000,
        "max": max(seconds) * 1000,
        "mean": statistics.fmean(seconds) * 1000,
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def checkout_server(
    argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path = ROOT
) -> ProcessGroup:
    """``argv`` in its own process group, importing ``examples/`` and ``benchmarks/`` from
    the checkout, with ``env`` on top of this process's environment."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return ProcessGroup(argv, env={**os.environ, "PYTHONPATH": path, **env}, log=log, cwd=cwd)


def worker_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the workers of a master process)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def wait_ready(server: ProcessGroup, port: int, within: float) -> None:
    """Until ``GET /whoami`` answers 200, or raise :class:`Skipped` with the log's tail."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.exited():
            raise Skipped(f"server exited at start: {server.output(10)!r}")
        with contextlib.suppress(OSError, HttpError, asyncio.TimeoutError, ValueError):
            connection = await Connection.open(port, 1.0)
            try:
                await connection.get_json("/whoami", 5.0)
                return
            finally:
                await connection.close()
        await asyncio.sleep(0.1)
    raise Skipped(f"server not ready within {within:.0f} s: {server.output(10)!r}")


# Databases: each run gets its own, so nothing of an earlier run (or of the
# test suite running beside us) is read.


def sqlite_url(directory: Path, name: str) -> str:
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return f"sqlite+aiosqlite:///{path}"


@contextlib.asynccontextmanager
async def database(directory: Path, backend: str, name: str) -> AsyncIterator[str]:
    """A new database for one cell: a SQLite file in ``directory`` (``backend`` "sqlite") or
    a fresh PostgreSQL database, dropped afterwards; :class:`Skipped` when PostgreSQL is
    not reachable."""
    if backend == "sqlite":
        yield sqlite_url(directory, name)
        return
    if not reachable(POSTGRES_URL):
        raise Skipped(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    async with fresh_database(f"waffle_bench_{name}") as url:
        yield url


@dataclass
class BenchConfig:
    """What to run and how long: the defaults keep the whole suite to a few
    minutes on 2 cores."""

    settings: tuple[int, ...] = (1, 100, 1_000, 10_000)
    channels: tuple[str, ...] = ("redis", "file", "postgres")
    updates: int = 50
    workers: int = 4
    cell_budget: float = 20.0  # seconds of updates per (channel, settings) cell at most
    fwc_settings: tuple[int, ...] = (1, 100, 1_000, 10_000)
    fwc_updates: int = 50
    throughput_seconds: float = 2.0
    throughput_rounds: int = 8
    connections: int = 32
    reload_requests: int = 10_000  # at least, per server and connection mode
    reload_reloads: int = 3
    reload_max_seconds: float = 45.0
    results: Path = RESULTS


def workspace(config: BenchConfig, name: str) -> Path:
    """``results/work/<name>``, emptied: databases, watch files and server
    logs of this run, kept until the next one for a look after a failure."""
    directory = (config.results / "work" / name).resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory
