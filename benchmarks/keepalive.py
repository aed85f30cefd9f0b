"""Steady serving, ours against the plain servers we run, in the same minute: the same app
(``examples.app``, file channel), the same virtualenv (so the same uvicorn and Hypercorn), no
reloads. Every contender is started first; the load then visits them in turn, a few seconds
each, for several rounds, so that a busy machine disturbs them all alike. For each contender:
requests served, how they spread over the workers in each slice (each response names its pid),
the ratio to plain uvicorn and to plain Hypercorn, and the CPU time the server's processes spent
per request.

    python -m benchmarks.keepalive                         # 4 workers, keep-alive, ~1 minute
    python -m benchmarks.keepalive --workers 1 --only uvicorn --only 'quart-waffle -k uvicorn'
    python -m benchmarks.keepalive --new-connections       # a new connection per request

The machine may be shared: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, ProcessGroup, free_port
from harness.load import LoadReport, run_load

from .reload_bench import _wait_all_workers

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
PLAIN = ("uvicorn", "hypercorn")


@dataclass
class Result:
    name: str
    served: int = 0
    failed: int = 0
    busiest: list[float] = field(default_factory=list)  # per slice: the busiest worker's share
    cpu: float = 0.0  # seconds of CPU, every process of the server, over its slices


def contenders(workers: int, port: int, workdir: Path) -> dict[str, list[str]]:
    ours = [str(BIN / "quart-waffle"), "serve", "examples.app:app", "-w", str(workers)]
    ours += ["-b", f"{HOST}:{port}", "--control-socket", str(workdir / "control.sock")]
    return {
        "quart-waffle -k hypercorn": [*ours, "-k", "hypercorn"],
        "quart-waffle -k hypercorn-uvloop": [*ours, "-k", "hypercorn-uvloop"],
        "quart-waffle -k uvicorn": [*ours, "-k", "uvicorn"],
        "quart-waffle -k uvicorn --native-accept": [*ours, "-k", "uvicorn", "--native-accept"],
        "uvicorn": [
            *(str(BIN / "uvicorn"), "examples.app:app", "--workers", str(workers)),
            *("--host", HOST, "--port", str(port), "--no-access-log"),
        ],
        "hypercorn": [
            *(str(BIN / "hypercorn"), "examples.app:app", "-w", str(workers)),
            *("-b", f"{HOST}:{port}"),
        ],
    }


@contextlib.contextmanager
def serving(name: str, workers: int, directory: Path) -> Iterator[tuple[ProcessGroup, int]]:
    workdir = directory / name.replace(" ", "_")
    workdir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "WAFFLE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/waffle.db",
        "WAFFLE_INSTANCE_PATH": str(workdir),
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(workdir / "waffle.watch"),
        "PYTHONPATH": str(ROOT),
    }
    server = ProcessGroup(
        contenders(workers, port, workdir)[name], env=env, log=workdir / "server.log", cwd=ROOT
    )
    server.start()
    try:
        yield server, port
    finally:
        server.stop(30.0)


async def measure_slice(
    result: Result, server: ProcessGroup, port: int, args: argparse.Namespace
) -> None:
    stop = asyncio.Event()
    report = LoadReport()
    load = asyncio.create_task(
        run_load(
            HOST,
            port,
            clients=args.clients,
            keep_alive=not args.new_connections,
            stop=stop,
            report=report,
        )
    )
    ended = time.monotonic() + args.slice
    cpu = session_cpu(server.pid)
    await asyncio.sleep(args.slice)
    result.cpu += session_cpu(server.pid) - cpu
    stop.set()
    await load
    samples = [s for s in report.samples if s.finished <= ended]
    result.served += len(samples)
    result.failed += len(report.failures)
    if samples:
        result.busiest.append(max(Counter(s.pid for s in samples).values()) / len(samples))


async def run(args: argparse.Namespace) -> list[Result]:
    names = [n for n in contenders(args.workers, 0, Path()) if not args.only or n in args.only]
    results = [Result(name) for name in names]
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qw-ka-")))
        servers = [stack.enter_context(serving(n, args.workers, directory)) for n in names]
        for server, port in servers:
            await _wait_all_workers(port, server.process, args.workers)
        await asyncio.sleep(2.0)  # let start-up settle
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds} ...", file=sys.stderr, flush=True)
            for result, (server, port) in zip(results, servers, strict=True):
                await measure_slice(result, server, port, args)
    return results


def session_cpu(session: int) -> float:
    """CPU seconds (user and system) spent so far by the live processes of `session`."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def table(results: list[Result], workers: int) -> str:
    plain = {r.name: r.served for r in results if r.name in PLAIN}
    lines = [
        "| server | served | failed | busiest worker's share | x uvicorn | x hypercorn"
        " | CPU us/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratios = [f"{r.served / plain[p]:.2f}" if plain.get(p) else "-" for p in PLAIN]
        busiest = sum(r.busiest) / max(len(r.busiest), 1)
        lines.append(
            f"| {r.name} | {r.served:,} | {r.failed} | {busiest:.0%} (even: {1 / workers:.0%})"
            f" | {' | '.join(ratios)} | {r.cpu / max(r.served, 1) * 1e6:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per contender per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-connections", action="store_true")
    parser.add_argument("--only", action="append", default=[], help="a contender; repeatable")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    results = asyncio.run(run(args))
    mode = "a new connection per request" if args.new_connections else "keep-alive"
    print(
        f"\n{args.workers} workers, {args.clients} clients, {mode}; {args.rounds} rounds of"
        f" {args.slice:g} s per contender; load average (1 min) {before:.1f} before,"
        f" {os.getloadavg()[0]:.1f} after\n"
    )
    print(table(results, args.workers))


if __name__ == "__main__":
    main()
