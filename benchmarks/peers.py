"""The supervisor against its peers, side by side in one run: the same app (``examples.app``,
file channel), 4 workers, 10 clients, two reloads per cell, with keep-alive connections and with
a new connection per request, under every worker class of ``quart-waffle serve`` (Hypercorn
also with ``--preload-app`` and with ``--no-fork-server``, workers from fresh interpreters) and
under

- uvicorn 0.54 ``--workers 4`` (SIGHUP: rolling, one worker at a time),
- gunicorn 27 ``-k asgi -w 4`` (SIGHUP),
- granian 2.8 ``--workers 4`` (SIGHUP: respawns the workers, 3.5 s apart),
- hypercorn 0.18 ``-w 4`` (SIGHUP),
- Flask-WaffleConf 0.3.1 under gunicorn 27 ``-k gthread -w 4`` (its own Flask app,
  ``benchmarks/flask_waffleconf.py``; SIGHUP).

Each peer is installed at that version in its own virtualenv, cached under
``~/.cache/quart-waffle-bench`` (``QUART_WAFFLE_BENCH_CACHE``), so reruns start at once. A
Quart peer's virtualenv sees this checkout's packages after its own (a ``.pth`` file), so it
serves the very app ours does with the server at the version named.

    python -m benchmarks.peers                # about 10 minutes on 2 idle cores
    python -m benchmarks.peers --quick        # a few minutes: 10 s windows, four contenders
    python -m benchmarks.peers --only uvicorn --only 'quart-waffle -k uvicorn'
    python -m benchmarks.peers --only 'quart-waffle -k hypercorn' --seconds 20  # how workers start

A request fails unless it gets a complete 200 on its first attempt. Every cell runs the load for
the same window. A peer is sent ``SIGHUP``; ours is asked over its control socket from this
process (what `quart-waffle reload` sends), so neither pays for a command's interpreter in the
window. Ours reports when its reload is over; a peer's is over once every worker that
answered before the signal has exited and as many new workers as it runs have answered. The
machine is shared: each cell prints the load average it ran under.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import math
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ROOT, ProcessGroup, free_port
from harness.load import LoadReport, Sample, run_load
from quart_waffle.supervisor import procfs
from quart_waffle.supervisor.control import request_reload

from .flask_waffleconf import APP_SOURCE as FWC_APP_SOURCE
from .flask_waffleconf import REQUIREMENTS as FWC_REQUIREMENTS
from .reload_bench import _wait_all_workers

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
CACHE = Path(
    os.environ.get("QUART_WAFFLE_BENCH_CACHE") or Path.home() / ".cache" / "quart-waffle-bench"
)
QUICK = ("quart-waffle -k hypercorn", "quart-waffle -k uvicorn", "uvicorn", "granian")
"""The contenders of ``--quick``: ours with the default and the fastest class, and the two
fastest peers."""
SIGNAL_RELOAD_TIMEOUT = 30.0
AFTER_OLD_GONE = 10.0  # seconds a peer's new workers get to answer once the old ones are gone

Reload = Callable[["Cell", subprocess.Popen[bytes], LoadReport], Coroutine[Any, Any, bool]]
"""Reloads, and says whether the reload completed (a peer may give up, e.g. uvicorn when a new
worker is not healthy within 5 s)."""


@dataclass(frozen=True)
class Options:
    workers: int = 4
    clients: int = 10
    seconds: float = 30.0
    reloads: int = 2
    first_reload_at: float = 0.2  # of the window
    # Clients arrive over the first second, as at a live server: all ten at once, at idle
    # workers, put every keep-alive connection on the two or three that accepted first. On 2
    # cores, how many workers hold the connections sets most of the keep-alive p99 (two or
    # three: 5-6 ms; all four: 9-14 ms), before and after each reload alike.
    ramp: float = 1.0
    pause: float = 1.0  # seconds between the end of one reload and the next


@dataclass(frozen=True)
class Contender:
    name: str
    requirements: tuple[str, ...]  # () : this checkout's own virtualenv
    argv: Callable[[Path, Options, int, Path], list[str]]  # (venv, options, port, workdir)
    reload: str  # "waffle" or "signal"
    quart_app: bool = True  # False: Flask-WaffleConf's own app


@dataclass
class Cell:
    contender: Contender
    keep_alive: bool
    options: Options
    workdir: Path
    report: LoadReport = field(default_factory=LoadReport)
    windows: list[tuple[float, float]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    incomplete: int = 0  # reloads that did not complete (old workers kept)
    error: str = ""

    @property
    def mode(self) -> str:
        return "keep-alive" if self.keep_alive else "new connection"

    def latencies(self, *, during: bool | None = None) -> list[float]:
        def overlaps(sample: Sample) -> bool:
            return any(sample.finished >= a and sample.started <= b for a, b in self.windows)

        return sorted(
            s.latency
            for s in self.report.samples
            if self.started <= s.started
            and s.finished <= self.ended
            and (during is None or overlaps(s) == during)
        )

    def served(self) -> int:
        return sum(
            1 for s in self.report.samples if self.started <= s.started <= s.finished <= self.ended
        )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _ours(worker_class: str, *start: str) -> Contender:
    """``quart-waffle serve -k worker_class``, its workers started as `start` says (forked by
    a fork server by default; ``--preload-app``, ``--no-fork-server``)."""

    def argv(venv: Path, options: Options, port: int, workdir: Path) -> list[str]:
        del venv
        return [
            *(str(BIN / "quart-waffle"), "serve", "examples.app:app", *start),
            *("-w", str(options.workers), "-k", worker_class, "-b", f"{HOST}:{port}"),
            *("--control-socket", str(workdir / "control.sock")),
        ]

    return Contender(" ".join(("quart-waffle -k", worker_class, *start)), (), argv, "waffle")


def _peer(name: str, requirements: tuple[str, ...], command: str) -> Contender:
    def argv(venv: Path, options: Options, port: int, workdir: Path) -> list[str]:
        del workdir
        words = command.format(workers=options.workers, host=HOST, port=port).split()
        return [str(venv / "bin" / words[0]), *words[1:]]

    return Contender(name, requirements, argv, "signal")


def contenders() -> list[Contender]:
    return [
        _ours("hypercorn"),
        _ours("hypercorn", "--preload-app"),
        _ours("hypercorn", "--no-fork-server"),
        _ours("hypercorn-uvloop"),
        _ours("uvicorn"),
        _ours("uvicorn", "--native-accept"),
        _peer(
            "uvicorn 0.54 --workers 4",
            ("uvicorn[standard]==0.54.*",),
            "uvicorn examples.app:app --workers {workers} --host {host} --port {port}"
            " --no-access-log",
        ),
        _peer(
            "gunicorn 27 -k asgi -w 4",
            ("gunicorn==27.*",),
            "gunicorn -k asgi -w {workers} -b {host}:{port} examples.app:app",
        ),
        _peer(
            "granian 2.8 --workers 4",
            ("granian[uvloop]==2.8.*",),
            "granian --interface asgi --workers {workers} --host {host} --port {port}"
            " examples.app:app",
        ),
        _peer(
            "hypercorn 0.18 -w 4",
            ("hypercorn==0.18.*",),
            "hypercorn -w {workers} -b {host}:{port} examples.app:app",
        ),
        Contender(
            "Flask-WaffleConf 0.3.1, gunicorn -k gthread -w 4",
            FWC_REQUIREMENTS,
            lambda venv, options, port, workdir: [
                str(venv / "bin" / "gunicorn"),
                *("-w", str(options.workers), "-k", "gthread", "--threads", "4"),
                *("-b", f"{HOST}:{port}", "fwc_app:app"),
            ],
            "signal",
            quart_app=False,
        ),
    ]


def venv_for(contender: Contender) -> Path:
    """The contender's virtualenv, made once and cached; this checkout's own for ours."""
    if not contender.requirements:
        return Path(sys.prefix)
    key = hashlib.sha256("\n".join(contender.requirements).encode()).hexdigest()[:12]
    venv = CACHE / f"{contender.requirements[0].split('=')[0].split('[')[0]}-{key}"
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    print(f"  installing {', '.join(contender.requirements)} into {venv} ...", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *contender.requirements],
        check=True,
        timeout=900,
    )
    if contender.quart_app:
        # This checkout's packages (Quart, quart-waffle, ...) after the peer's own.
        ours = sysconfig.get_paths()["purelib"]
        theirs = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(theirs, "quart_waffle_bench.pth").write_text(
            f"import site; site.addsitedir({ours!r})\n"
        )
    stamp.write_text("\n".join(contender.requirements))
    return venv


@contextlib.contextmanager
def _serving(
    contender: Contender, venv: Path, options: Options, port: int, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ}
    cwd = ROOT
    if contender.quart_app:
        env |= {
            "WAFFLE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/waffle.db",
            "WAFFLE_INSTANCE_PATH": str(workdir),
            "WAFFLE_WATCHTYPE": "file",
            "WAFFLE_WATCHER_FILE": str(workdir / "waffle.watch"),
            "PYTHONPATH": str(ROOT),
        }
    else:
        cwd = workdir
        (workdir / "fwc_app.py").write_text(FWC_APP_SOURCE)
        env |= {
            "FWC_DATABASE_URL": f"sqlite:///{workdir}/fwc.db",
            "FWC_WATCHTYPE": "file",
            "FWC_WATCHER_FILE": str(workdir / "fwc.watch"),
            "FWC_REDIS_CHANNEL": f"fwc-peers-{os.getpid()}",
            "FWC_APP_CONTEXT_WRAPPER": "1",
            "PYTHONPATH": str(workdir),
        }
        subprocess.run(
            [str(venv / "bin" / "python"), str(workdir / "fwc_app.py")],
            env=env,
            cwd=workdir,
            check=True,
            capture_output=True,
            timeout=300,
        )
    argv = contender.argv(venv, options, port, workdir)
    server = ProcessGroup(argv, env=env, log=workdir / "server.log", cwd=cwd)
    server.start()
    try:
        yield server.process
    finally:
        server.stop(30.0)


async def _waffle_reload(cell: Cell, server: subprocess.Popen[bytes], report: LoadReport) -> bool:
    """Ask over the control socket, from this process, as `quart-waffle reload` does: a peer
    is sent a signal, so neither pays for starting a command's interpreter in the window."""
    del server, report
    path = str(cell.workdir / "control.sock")
    await asyncio.to_thread(request_reload, path, SIGNAL_RELOAD_TIMEOUT, io.StringIO())
    return True


def _gone(pid: int) -> bool:
    status = procfs.status(pid)
    return status is None or status.state in ("Z", "X")


async def _signal_reload(cell: Cell, server: subprocess.Popen[bytes], report: LoadReport) -> bool:
    """SIGHUP, then wait until every worker that answered before it has exited and as many new
    workers as the server runs have answered (or `AFTER_OLD_GONE` seconds have passed since)."""
    sent = time.monotonic()
    old = {sample.pid for sample in report.samples}
    server.send_signal(signal.SIGHUP)
    old_gone_at: float | None = None
    while time.monotonic() < sent + SIGNAL_RELOAD_TIMEOUT:
        if old_gone_at is None and all(_gone(pid) for pid in old):
            old_gone_at = time.monotonic()
        if old_gone_at is not None:
            new = {s.pid for s in report.samples[-5000:] if s.started > sent} - old
            if len(new) >= cell.options.workers or time.monotonic() > old_gone_at + AFTER_OLD_GONE:
                return True
        await asyncio.sleep(0.05)
    return False  # the old workers still serve


RELOADS: dict[str, Reload] = {"waffle": _waffle_reload, "signal": _signal_reload}


async def measure(cell: Cell, venv: Path) -> None:
    options = cell.options
    port = free_port()
    with _serving(cell.contender, venv, options, port, cell.workdir) as server:
        await _wait_all_workers(port, server, options.workers)
        await asyncio.sleep(1.0)  # let start-up settle
        before = os.getloadavg()[0]
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load(
                HOST,
                port,
                clients=options.clients,
                keep_alive=cell.keep_alive,
                stop=stop,
                report=cell.report,
                ramp=options.ramp,
            )
        )
        await asyncio.sleep(options.ramp)  # the window opens once every client is connected
        cell.started = time.monotonic()
        cell.ended = cell.started + options.seconds
        reload = RELOADS[cell.contender.reload]
        reloading: asyncio.Task[bool] | None = None
        try:
            await asyncio.sleep(options.seconds * options.first_reload_at)
            while len(cell.windows) < options.reloads and time.monotonic() < cell.ended - 1.0:
                begin = time.monotonic()
                reloading = asyncio.create_task(reload(cell, server, cell.report))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(cell.ended - begin, 0.0)):
                        await asyncio.shield(reloading)
                if not reloading.done():
                    break  # the window is over before the reload: it is waited for below
                if not reloading.result():
                    cell.incomplete += 1
                cell.windows.append((begin, time.monotonic()))
                reloading = None
                await asyncio.sleep(options.pause)
            await asyncio.sleep(max(cell.ended - time.monotonic(), 0.0))
        finally:
            stop.set()
            await load
            cell.load = (before, os.getloadavg()[0])
        if reloading is not None:
            if not await reloading:
                cell.incomplete += 1
            cell.windows.append((begin, time.monotonic()))


HEADER = [
    "server",
    "connections",
    "failed",
    "served",
    "req/s",
    "p99 steady / reloading (ms)",
    "worst (ms)",
    "reloads, s each",
    "load avg",
]


def row(cell: Cell) -> list[str]:
    if cell.error:
        return [cell.contender.name, cell.mode, "-", "-", "-", "-", "-", cell.error[:60], "-"]
    steady = percentile(cell.latencies(during=False), 0.99)
    during = percentile(cell.latencies(during=True), 0.99)
    durations = ", ".join(f"{b - a:.1f}" for a, b in cell.windows)
    if cell.incomplete:
        durations += f" ({cell.incomplete} not completed)"
    return [
        cell.contender.name,
        cell.mode,
        f"{len(cell.report.failures):,}",
        f"{cell.served():,}",
        f"{cell.served() / cell.options.seconds:,.0f}",
        f"{_ms(steady)} / {_ms(during)}",
        _ms(max(cell.latencies(), default=None)),
        f"{len(cell.windows)}: {durations}",
        f"{cell.load[0]:.1f}-{cell.load[1]:.1f}",
    ]


def table(cells: list[Cell]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row(cell)) + " |" for cell in cells]
    return "\n".join(lines)


def completed_in_window(cell: Cell) -> int:
    """The reloads that completed before the cell's load window ended."""
    done = sum(1 for _, end in cell.windows if end <= cell.ended)
    return max(done - cell.incomplete, 0)


def verdicts(cells: list[Cell]) -> list[str]:
    """The issue's targets, judged on this run: 0 failed requests for every class of ours;
    the fastest of ours serves at least uvicorn's count (judged only where uvicorn completed
    as many reloads within the window as ours: a reload it skipped or gave up costs it
    nothing); p99 during reloads at most 1.5x steady; a reload at most 5 s."""
    lines: list[str] = []
    for mode in ("keep-alive", "new connection"):
        ours = [
            c for c in cells if c.mode == mode and c.contender.reload == "waffle" and not c.error
        ]
        uvicorn = [c for c in cells if c.mode == mode and c.contender.name.startswith("uvicorn")]
        failed = {c.contender.name: len(c.report.failures) for c in ours}
        lines.append(f"- {mode}: failed requests of ours: {failed}")
        if ours and uvicorn and not uvicorn[0].error:
            best = max(ours, key=Cell.served)
            ratio = best.served() / max(uvicorn[0].served(), 1)
            theirs, wanted = completed_in_window(uvicorn[0]), completed_in_window(best)
            judged = (
                f"target >= 1.00x: {'met' if ratio >= 1.0 else 'missed'}"
                if theirs >= wanted
                else f"not judged: uvicorn completed {theirs} reload(s) in the window, ours"
                f" {wanted}"
            )
            lines.append(
                f"- {mode}: fastest of ours ({best.contender.name}) served {ratio:.2f}x"
                f" uvicorn's requests ({judged})"
            )
        for cell in ours:
            steady = percentile(cell.latencies(during=False), 0.99)
            during = percentile(cell.latencies(during=True), 0.99)
            durations = [b - a for a, b in cell.windows]
            if steady and during:
                ratio = during / steady
                lines.append(
                    f"- {mode}, {cell.contender.name}: p99 reloading / steady {ratio:.2f}x"
                    f" (target <= 1.5x: {'met' if ratio <= 1.5 else 'missed'}); reloads took"
                    f" {', '.join(f'{d:.1f}' for d in durations)} s (target <= 5 s:"
                    f" {'met' if durations and max(durations) <= 5.0 else 'missed'})"
                )
    return lines


async def run(options: Options, chosen: list[Contender]) -> list[Cell]:
    cells: list[Cell] = []
    venvs = {c.name: await asyncio.to_thread(venv_for, c) for c in chosen}
    with tempfile.TemporaryDirectory(prefix="quart-waffle-peers-") as directory:
        for number, contender in enumerate(chosen):
            for keep_alive in (True, False):
                workdir = Path(directory, f"{number}-{int(keep_alive)}")
                workdir.mkdir()  # noqa: ASYNC240 (a local directory: instant)
                cell = Cell(contender, keep_alive, options, workdir)
                print(f"{contender.name}, {cell.mode} ...", file=sys.stderr, flush=True)
                try:
                    async with asyncio.timeout(options.seconds + 180):
                        await measure(cell, venvs[contender.name])
                except Exception as error:  # one broken cell must not lose the others
                    cell.error = f"{type(error).__name__}: {error}"
                    log = workdir / "server.log"
                    tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                    print(f"  failed: {cell.error}\n{tail}", file=sys.stderr, flush=True)
                else:
                    print(f"  {' | '.join(row(cell)[2:])}", file=sys.stderr, flush=True)
                cells.append(cell)
    return cells


def _named(contender: Contender, name: str) -> bool:
    """`name` is the contender's name or its first words (``uvicorn``, ``quart-waffle``)."""
    return contender.name == name or contender.name.startswith(f"{name} ")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"10 s windows, and only {', '.join(QUICK)} unless --only is given",
    )
    parser.add_argument("--seconds", type=float, help="load window per cell (default 30)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--reloads", type=int, default=2)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="a contender's name or its first words ('uvicorn', 'quart-waffle'); repeatable",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    options = Options(args.workers, args.clients, seconds, args.reloads)
    only = args.only or (list(QUICK) if args.quick else [])
    chosen = [c for c in contenders() if not only or any(_named(c, name) for name in only)]
    cells = asyncio.run(run(options, chosen))
    print(
        f"\n{options.workers} workers, {options.clients} clients, {options.seconds:g} s per cell,"
        f" {options.reloads} reloads; load average 1 min before-after each cell\n"
    )
    print(table(cells))
    print()
    print("\n".join(verdicts(cells)))


if __name__ == "__main__":
    main()
