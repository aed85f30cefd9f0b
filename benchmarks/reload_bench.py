"""Failed requests and worst latency during rolling reloads, for the same load, in one run:
`quart-waffle serve` (Hypercorn workers, and uvicorn ones with ``-k uvicorn``) +
`quart-waffle reload` against plain `hypercorn -w N` + SIGHUP, with a
new connection per request and with keep-alive connections. Loopback only, bounded in time.

    python -m benchmarks.reload_bench                              # a few minutes on 2 cores
    python -m benchmarks.reload_bench --requests 100000 --reloads 10

A request fails unless it gets a complete 200 on its first attempt: a keep-alive connection
closed by the server before any byte of the response counts too (column "stale").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT, ProcessGroup, free_port
from harness.load import LoadReport, run_load

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
HYPERCORN_RELOAD_TIMEOUT = 60.0
PAUSE_BETWEEN_RELOADS = 1.0
CONTROL_SOCKET = os.path.join(tempfile.gettempdir(), f"quart-waffle-bench-{os.getpid()}.sock")


@dataclass(frozen=True)
class Options:
    app: str
    workers: int
    clients: int
    requests: int
    reloads: int
    max_seconds: float


@dataclass(frozen=True)
class Result:
    server: str
    mode: str
    report: LoadReport
    reloads: int
    windows: list[tuple[float, float]]
    seconds: float

    def worst_during_reloads(self) -> float:
        return max((self.report.worst_latency(a, b) for a, b in self.windows), default=0.0)

    def worst_outside_reloads(self) -> float:
        """The noise floor of this machine under this load, for comparison."""
        return max(
            (
                sample.latency
                for sample in self.report.samples
                if not any(sample.finished >= a and sample.started <= b for a, b in self.windows)
            ),
            default=0.0,
        )


async def _wait_all_workers(port: int, process: subprocess.Popen[bytes], workers: int) -> None:
    """Wait until every worker has answered, so that start-up is not measured."""
    stop = asyncio.Event()
    probe = LoadReport()
    load = asyncio.create_task(
        run_load(HOST, port, clients=2, keep_alive=False, stop=stop, report=probe)
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while len({sample.pid for sample in probe.samples}) < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: exit code {process.returncode}")
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await load


async def _waffle_reload(
    options: Options, server: subprocess.Popen[bytes], report: LoadReport
) -> None:
    del options, server, report
    process = await asyncio.create_subprocess_exec(
        str(BIN / "quart-waffle"),
        "reload",
        "--control-socket",
        CONTROL_SOCKET,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, error = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"quart-waffle reload failed: {error.decode().strip()}")


async def _hypercorn_reload(
    options: Options, server: subprocess.Popen[bytes], report: LoadReport
) -> None:
    # Hypercorn says nothing when a SIGHUP is over: it is, once as many workers as it runs have
    # answered that were not answering before.
    sent = time.monotonic()
    before = {sample.pid for sample in report.samples}
    server.send_signal(signal.SIGHUP)
    while time.monotonic() < sent + HYPERCORN_RELOAD_TIMEOUT:
        new = {s.pid for s in report.samples[-5000:] if s.started > sent} - before
        if len(new) >= options.workers:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"hypercorn was not back within {HYPERCORN_RELOAD_TIMEOUT:g} s")


@dataclass(frozen=True)
class Contender:
    name: str
    command: list[str]
    reload: Callable[[Options, subprocess.Popen[bytes], LoadReport], Awaitable[None]]


def contenders(options: Options) -> list[Contender]:
    workers = ["-w", str(options.workers)]
    return [
        *(
            Contender(
                f"quart-waffle serve -w {options.workers}{suffix} + reload",
                [
                    *(str(BIN / "quart-waffle"), "serve", options.app, *workers, *classes),
                    *("--control-socket", CONTROL_SOCKET),
                ],
                _waffle_reload,
            )
            for suffix, classes in (("", []), (" -k uvicorn", ["-k", "uvicorn"]))
        ),
        Contender(
            f"hypercorn -w {options.workers} + SIGHUP",
            [str(BIN / "hypercorn"), *workers, options.app],
            _hypercorn_reload,
        ),
    ]


@contextlib.contextmanager
def _serving(contender: Contender, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The contender on `port`, with a fresh database, logging to a file; stopped on exit."""
    with tempfile.TemporaryDirectory() as directory:
        env = {
            **os.environ,
            "WAFFLE_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/waffle.db",
            "WAFFLE_INSTANCE_PATH": directory,
        }
        argv = [*contender.command, "-b", f"{HOST}:{port}"]
        server = ProcessGroup(argv, env=env, log=Path(directory) / "server.log", cwd=ROOT)
        server.start()
        try:
            yield server.process
        finally:
            server.stop(30.0)


async def measure(options: Options, contender: Contender, keep_alive: bool) -> Result:
    """One cell: `contender` under load, reloaded `options.reloads` times (within
    `options.max_seconds`), with a new connection per request or keep-alive."""
    port = free_port()
    with _serving(contender, port) as server:
        await _wait_all_workers(port, server, options.workers)
        return await _drive(options, contender, server, keep_alive, port)


async def _drive(
    options: Options,
    contender: Contender,
    server: subprocess.Popen[bytes],
    keep_alive: bool,
    port: int,
) -> Result:
    stop = asyncio.Event()
    report = LoadReport()
    started = time.monotonic()
    load = asyncio.create_task(
        run_load(
            HOST, port, clients=options.clients, keep_alive=keep_alive, stop=stop, report=report
        )
    )
    windows: list[tuple[float, float]] = []
    deadline = started + options.max_seconds
    await asyncio.sleep(PAUSE_BETWEEN_RELOADS)
    while len(windows) < options.reloads and time.monotonic() < deadline:
        begin = time.monotonic()
        await contender.reload(options, server, report)
        windows.append((begin, time.monotonic()))
        await asyncio.sleep(PAUSE_BETWEEN_RELOADS)
    # The load runs in its own task; its counter is all there is to wait on.
    while report.requests < options.requests and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stop.set()
    await load
    mode = "keep-alive" if keep_alive else "new connection per request"
    elapsed = time.monotonic() - started
    return Result(contender.name, mode, report, len(windows), windows, elapsed)


HEADER = [
    "server",
    "connections",
    "requests",
    "failed",
    "stale",
    "reloads",
    "worst latency during reloads",
    "outside reloads",
    "seconds",
]


def row(result: Result) -> list[str]:
    """`result` as a row under HEADER."""
    report = result.report
    return [
        result.server,
        result.mode,
        f"{report.requests:,}",
        f"{len(report.failures):,}",
        f"{report.stale_closes:,}",
        str(result.reloads),
        f"{result.worst_during_reloads() * 1000:,.0f} ms",
        f"{result.worst_outside_reloads() * 1000:,.0f} ms",
        f"{result.seconds:.0f}",
    ]


def failures(result: Result) -> str:
    """One line: how many requests failed over how many reloads, with examples."""
    failed = len(result.report.failures)
    kinds = sorted(set(result.report.failures))[:3]
    return (
        f"{result.server}, {result.mode}: {failed:,} of {result.report.requests:,} requests"
        f" failed over {result.reloads} reloads" + (f" (e.g. {'; '.join(kinds)})" if kinds else "")
    )


def _print(results: list[Result], options: Options) -> None:
    print(f"\n{options.workers} workers, {options.clients} clients, app {options.app}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print("| " + " | ".join(row(result)) + " |")
    print()
    for result in results:
        print(failures(result))


async def _main(options: Options) -> None:
    results: list[Result] = []
    for contender in contenders(options):
        for keep_alive in (False, True):
            print(f"{contender.name}, keep-alive={keep_alive} ...", file=sys.stderr, flush=True)
            results.append(await measure(options, contender, keep_alive))
    _print(results, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="examples.app:app")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20_000, help="at least, per cell")
    parser.add_argument("--reloads", type=int, default=4, help="per cell")
    parser.add_argument("--max-seconds", type=float, default=75.0, help="per cell, at most")
    args = parser.parse_args()
    asyncio.run(_main(Options(**vars(args))))


if __name__ == "__main__":
    main()
