"""Throughput of a route that reads settings, with the extension and on a bare
Quart app under the same ``hypercorn -w 4`` settings, runs interleaved
A/B/A/B in one process; and memory per worker (RSS) with 10,000 settings.

The load comes from ``wrk`` when installed (``apt-get install wrk``), else
from a bounded asyncio client (which then shares the 2 cores and reaches
lower absolute figures; the ratio is what counts). Run alone with
``python -m benchmarks.throughput``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    HYPERCORN,
    REDIS_URL,
    Connection,
    close_all,
    connect_per_worker,
    free_port,
    reachable,
)

from .common import (
    BenchConfig,
    Section,
    Skipped,
    checkout_server,
    fmt,
    rss_mib,
    sqlite_url,
    wait_ready,
    workspace,
)

BARE = "bare Quart"
TARGET_RATIO = 0.97


@dataclass
class Variant:
    """One app to load: its module and WAFFLE_* environment."""

    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)
    rates: list[float] = field(default_factory=list)
    errors: int = 0
    rss: list[float] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(
    variant: Variant, directory: Path, workers: int
) -> AsyncIterator[tuple[int, list[int]]]:
    port = free_port()
    server = checkout_server(
        [
            *(HYPERCORN, "-w", str(workers), "--keep-alive", "600"),
            *("-b", f"127.0.0.1:{port}", variant.module),
        ],
        env={"WAFFLE_INSTANCE_PATH": str(directory), **variant.env},
        log=directory / f"{variant.name.replace(' ', '-')}.log",
    )
    server.start()
    try:
        await wait_ready(server, port, 120.0)
        connections = await connect_per_worker(port, workers)
        await close_all(list(connections.values()))
        yield port, sorted(connections)
    finally:
        server.stop()


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """Requests per second and failed requests, from wrk."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if result.returncode != 0 or rate is None:
        raise Skipped(f"wrk failed: {result.stdout[-300:]} {result.stderr[-300:]}")
    failures = r"(?:Non-2xx or 3xx responses:|connect|read|write|timeout) (\d+)"
    errors = sum(int(count) for count in re.findall(failures, result.stdout))
    return float(rate.group(1)), errors


async def _asyncio_load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """Keep-alive clients, each a request at a time, for ``seconds``."""
    deadline = time.monotonic() + seconds
    counts = [0] * connections
    errors = 0

    async def client(index: int) -> None:
        nonlocal errors
        connection = await Connection.open(port)
        try:
            while time.monotonic() < deadline:
                status, _ = await connection.request("GET", "/")
                if status == 200:
                    counts[index] += 1
                else:
                    errors += 1
                if connection.server_closes:  # Hypercorn's limit of requests per connection
                    await connection.close()
                    connection = await Connection.open(port)
        finally:
            await connection.close()

    started = time.monotonic()
    await asyncio.gather(*(client(index) for index in range(connections)))
    return sum(counts) / (time.monotonic() - started), errors


async def load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    if shutil.which("wrk"):
        return await asyncio.to_thread(_wrk, port, seconds, connections)
    return await _asyncio_load(port, seconds, connections)


def variants(directory: Path) -> list[Variant]:
    found = [Variant(BARE, "benchmarks.bare_app:app")]
    base = {"WAFFLE_DATABASE_URL": sqlite_url(directory, "throughput")}
    if reachable(REDIS_URL):
        found.append(
            Variant(
                "quart-waffle (redis)",
                "examples.app:app",
                {**base, "WAFFLE_WATCHTYPE": "redis", "WAFFLE_REDIS_URL": REDIS_URL},
            )
        )
    found.append(
        Variant(
            "quart-waffle (file)",
            "examples.app:app",
            {**base, "WAFFLE_WATCHTYPE": "file"},
        )
    )
    return found


async def memory(directory: Path, workers: int, env: Mapping[str, str], module: str) -> list[float]:
    variant = Variant("memory", module, dict(env))
    async with serving(variant, directory, workers) as (_port, pids):
        await asyncio.sleep(0.5)
        return [rss for pid in pids if (rss := rss_mib(pid)) is not None]


async def run(config: BenchConfig) -> Section:
    section = Section("Throughput and memory per worker (hypercorn -w 4)")
    print(f"\n== {section.title}", flush=True)
    tool = "wrk -t1" if shutil.which("wrk") else "asyncio client (wrk not installed)"
    directory = workspace(config, "throughput")
    tried = variants(directory)
    try:
        async with contextlib.AsyncExitStack() as stack:
            ports: dict[str, int] = {}
            for variant in tried:  # all up at once: rounds can alternate quickly
                port, pids = await stack.enter_async_context(
                    serving(variant, directory, config.workers)
                )
                ports[variant.name] = port
                variant.pids = pids
                await load(port, 1.0, config.connections)  # warm up
            for index in range(config.throughput_rounds):
                # A/B/C then B/C/A ...: drift and neighbours' load hit every variant alike
                shift = index % len(tried)
                for variant in tried[shift:] + tried[:shift]:
                    rate, errors = await load(
                        ports[variant.name], config.throughput_seconds, config.connections
                    )
                    variant.rates.append(rate)
                    variant.errors += errors
                print(
                    "  round "
                    + ", ".join(f"{variant.name} {fmt(variant.rates[-1], 0)}" for variant in tried)
                    + " req/s",
                    flush=True,
                )
            for variant in tried:
                variant.rss = [r for pid in variant.pids if (r := rss_mib(pid)) is not None]
    except Skipped as reason:
        section.skip(str(reason))
        return section
    bare = tried[0].rates
    rows: list[list[object]] = []
    ratios: dict[str, float] = {}
    for variant in tried:
        # paired by round: each round's ratio to bare, then the median of those
        ratio = statistics.median(
            rate / base for rate, base in zip(variant.rates, bare, strict=True)
        )
        ratios[variant.name] = ratio
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        verdict = "-" if variant.name == BARE else verdict
        rows.append(
            [
                variant.name,
                fmt(statistics.median(variant.rates), 0),
                f"{fmt(min(variant.rates), 0)} to {fmt(max(variant.rates), 0)}",
                f"{ratio:.1%}",
                verdict,
                variant.errors,
                fmt(statistics.fmean(variant.rss)) if variant.rss else "-",
            ]
        )
    section.data["throughput_ratio"] = ratios
    section.data["throughput"] = {variant.name: variant.rates for variant in tried}
    section.data["throughput_errors"] = {variant.name: variant.errors for variant in tried}
    section.table(
        [
            "app",
            "median req/s",
            "range over rounds",
            "vs bare (median of per-round ratios)",
            f"target >= {TARGET_RATIO:.0%}",
            "failed",
            "RSS per worker (MiB)",
        ],
        rows,
    )
    filler = {
        "WAFFLE_DATABASE_URL": sqlite_url(directory, "memory"),
        "WAFFLE_WATCHTYPE": "none",
    }
    rss_rows: list[list[object]] = []
    for label, module, env in (
        (BARE, "benchmarks.bare_app:app", {}),
        ("quart-waffle, 7 settings", "examples.app:app", filler),
        (
            "quart-waffle, 10,000 settings",
            "examples.app:app",
            {**filler, "WAFFLE_FILLER_SETTINGS": "9993"},
        ),
    ):
        try:
            sizes = await memory(directory, config.workers, env, module)
        except Skipped as reason:
            rss_rows.append([label, f"skipped: {reason}", "-"])
            continue
        rss_rows.append([label, fmt(statistics.fmean(sizes)), fmt(max(sizes))])
    section.data["memory"] = rss_rows
    section.table(["app", "mean RSS per worker (MiB)", "max (MiB)"], rss_rows)
    section.note(
        f"load: {tool}, {config.connections} keep-alive connections to GET / (reads"
        f" MAINTENANCE and GREETING through current_app.config),"
        f" {config.throughput_seconds:.0f} s per app per round after a 1 s warm-up,"
        f" {config.throughput_rounds} rounds interleaved with the three apps serving"
        " side by side; load generator and servers share the machine's cores"
    )
    print("\n".join(section.lines), flush=True)
    return section


if __name__ == "__main__":
    BenchConfig().results.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(BenchConfig()))
