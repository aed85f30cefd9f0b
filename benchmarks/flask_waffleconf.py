"""Flask-WaffleConf 0.3.1 side by side: the same measurement as
:mod:`benchmarks.propagation`, on a Flask 3 app with the same declarations
under ``gunicorn -w 4 -k gthread``, redis and file modes.

The benchmark installs Flask-WaffleConf, Flask 3, Flask-SQLAlchemy 3,
gunicorn and redis from PyPI into its own virtualenv (cached under
``benchmarks/results/.fwc-venv``). Its watcher thread dies under
Flask-SQLAlchemy 3 (the store's queries need an app context the thread does
not have), so it is measured as it ships and with the app wrapping each
reload in an app context. Run alone with ``python -m benchmarks.flask_waffleconf``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import (
    REDIS_URL,
    Connection,
    ProcessGroup,
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
    summary_ms,
    wait_ready,
    workspace,
)
from .propagation import BASE_SETTINGS, HEADER, Cell, measure, measure_ours

REQUIREMENTS = (
    "Flask-WaffleConf==0.3.1",
    "flask>=3,<4",
    "flask-sqlalchemy>=3,<4",
    "gunicorn",
    "redis",
)
VERSUS_ROUNDS = 3
FILE_POLL = 10.0  # Flask-WaffleConf's file watcher sleeps 10 s between checks

# The Flask app under test: written next to the virtualenv, not imported here.
APP_SOURCE = '''
"""Flask 3 + Flask-SQLAlchemy 3 + Flask-WaffleConf 0.3.1, declaring the same
settings as examples/app.py, for the quart-waffle benchmarks."""

import os
import sys
import tempfile

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from flask_waffleconf import AlchemyWaffleStore, WaffleConf, WaffleMixin
from flask_waffleconf import util

FILLER = int(os.environ.get("FWC_FILLER_SETTINGS", "0"))
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["FWC_DATABASE_URL"]
app.config["WAFFLE_MULTIPROC"] = True
app.config["WAFFLE_WATCHTYPE"] = os.environ["FWC_WATCHTYPE"]
app.config["WAFFLE_WATCHER_FILE"] = os.environ["FWC_WATCHER_FILE"]
app.config["WAFFLE_REDIS_CHANNEL"] = os.environ["FWC_REDIS_CHANNEL"]
app.config["WAFFLE_CONFS"] = {
    "GREETING": {"default": "Hello, world!", "desc": "Shown on the home page"},
    "BANNER": {"default": {"text": "", "level": "info"}, "desc": "A site-wide banner"},
    "MAX_ITEMS": {"default": 20, "desc": "Items per page"},
    "RATE": {"default": 1.5, "desc": "Requests per second per client"},
    "MAINTENANCE": {"default": False, "desc": "Serve a maintenance notice"},
    "THEME": {"default": "light", "desc": "Colour theme"},
    "API_KEY": {"default": "change-me", "desc": "Partner API key"},
    **{f"FILLER_{i}": {"default": i, "desc": "Benchmark filler"} for i in range(FILLER)},
}
db = SQLAlchemy(app)


class ConfigEntry(db.Model, WaffleMixin):
    __tablename__ = "waffle_config"
    id = db.Column(db.Integer, primary_key=True)
    key = db.Column(db.String(200), unique=True, nullable=False)
    value = db.Column(db.Text, nullable=False)


def seed():
    """Create the table and every default in one transaction (run once,
    before the workers start, so startup is not what is measured)."""
    with app.app_context():
        db.create_all()
        known = {entry.key for entry in ConfigEntry.query.all()}
        db.session.add_all(
            ConfigEntry(key=key, value=util.serialize(conf["default"]))
            for key, conf in app.config["WAFFLE_CONFS"].items()
            if key not in known
        )
        db.session.commit()


if __name__ == "__main__":
    seed()
    sys.exit(0)

if os.environ.get("FWC_APP_CONTEXT_WRAPPER") == "1":
    # The fix an app needs under Flask-SQLAlchemy 3: every reload the watcher
    # thread does runs in a fresh app context (and so a fresh session). Set
    # before the watcher starts: it may reload at once (the watch file's
    # mtime moves when another worker creates it).
    from flask_waffleconf import core

    _update_conf = core._WaffleState.update_conf

    def update_conf_in_app_context(self):
        with self.app.app_context():
            return _update_conf(self)

    core._WaffleState.update_conf = update_conf_in_app_context

WaffleConf(app, AlchemyWaffleStore(db=db, model=ConfigEntry))
state = app.extensions["waffleconf"]
with app.app_context():
    _loaded = state.parse_conf()
    app.config.update(_loaded)


@app.get("/whoami")
def whoami():
    return jsonify(pid=os.getpid(), settings={"GREETING": app.config["GREETING"]})


@app.get("/")
def index():
    if app.config["MAINTENANCE"]:
        return "Down for maintenance, back soon.", 503
    return app.config["GREETING"]


@app.post("/update")
def update():
    state.update_db(request.get_json())
    return jsonify(ok=True)
'''


def _venv(config: BenchConfig) -> Path:
    """The cached virtualenv with Flask-WaffleConf and friends; :class:`Skipped`
    naming the package that could not be had."""
    venv = config.results / ".fwc-venv"
    stamp = venv / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return venv
    with tempfile.TemporaryDirectory() as downloads:
        for requirement in REQUIREMENTS:
            found = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    downloads,
                    requirement,
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if found.returncode != 0:
                raise Skipped(f"{requirement} cannot be had from PyPI: {found.stderr[-300:]}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0:
        raise Skipped(f"installing {', '.join(REQUIREMENTS)} failed: {installed.stderr[-300:]}")
    stamp.write_text(wanted)
    return venv


@contextlib.asynccontextmanager
async def fwc_deployment(
    venv: Path, directory: Path, watchtype: str, filler: int, wrapper: bool, bus: str
) -> AsyncIterator[tuple[ProcessGroup, int]]:
    app_dir = directory / "fwc-app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "fwc_app.py").write_text(APP_SOURCE)
    name = f"fwc-{watchtype}-{filler}-{'wrapped' if wrapper else 'shipped'}"
    database = directory / f"{name}.db"
    env = {
        "FWC_DATABASE_URL": f"sqlite:///{database}",
        "FWC_WATCHTYPE": watchtype,
        "FWC_WATCHER_FILE": str(directory / f"{name}.watch"),
        "FWC_REDIS_CHANNEL": bus,
        "FWC_FILLER_SETTINGS": str(filler),
        "FWC_APP_CONTEXT_WRAPPER": "1" if wrapper else "0",
        "PYTHONPATH": str(app_dir),
    }
    python = str(venv / "bin" / "python")
    seeded = await asyncio.to_thread(
        subprocess.run,
        [python, str(app_dir / "fwc_app.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if seeded.returncode != 0:
        raise Skipped(f"the Flask app failed to seed its table: {seeded.stderr[-400:]}")
    port = free_port()
    server = checkout_server(
        [
            *(str(venv / "bin" / "gunicorn"), "-w", "4", "-k", "gthread", "--threads", "4"),
            *("--keep-alive", "600", "--timeout", "300", "-b", f"127.0.0.1:{port}", "fwc_app:app"),
        ],
        env=env,
        log=directory / f"{name}.log",
        cwd=app_dir,
    )
    server.start()
    try:
        await wait_ready(server, port, 300.0)
        yield server, port
    finally:
        server.stop()


async def measure_fwc(
    config: BenchConfig,
    venv: Path,
    directory: Path,
    watchtype: str,
    declared: int,
    wrapper: bool,
    bus: str,
) -> Cell:
    system = "Flask-WaffleConf 0.3.1" + (" + app-context wrapper" if wrapper else " as shipped")
    cell = Cell(system, watchtype, max(declared, BASE_SETTINGS))
    # every change re-reads every key, one query each: seconds at 10,000
    limit = FILE_POLL + 3.0 if watchtype == "file" else max(5.0, declared / 200)
    warm_ups = 0
    if not wrapper:
        # its watcher dies at the first change: one or two show it
        updates, budget = (1 if watchtype == "file" else 2), 0.0
    elif watchtype == "file":
        updates, budget = config.fwc_updates, 45.0
    else:
        updates, budget = config.fwc_updates, config.cell_budget
        warm_ups = 1 if declared < 1_000 else 0  # a change costs seconds at 10,000
    filler = max(0, declared - BASE_SETTINGS)
    try:
        async with fwc_deployment(venv, directory, watchtype, filler, wrapper, bus) as (
            server,
            port,
        ):
            workers = await connect_per_worker(port, config.workers)
            updater = await Connection.open(port)

            async def trigger(value: str) -> None:
                status, body = await updater.request(
                    "POST",
                    "/update",
                    body=json.dumps({"GREETING": value}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                if status != 200:
                    raise RuntimeError(f"update failed: {status} {body[:200]!r}")

            cell.trigger = "HTTP POST to its update_db()"
            try:
                await measure(
                    cell,
                    workers,
                    trigger,
                    updates=updates,
                    budget=budget,
                    limit=limit,
                    minimum=(3 if declared < 10_000 else 2) if wrapper else updates,
                    warm_ups=warm_ups,
                )
            finally:
                await close_all([updater, *workers.values()])
            if "Working outside of application context" in server.output(10**7):
                cell.trigger += "; watcher thread died: RuntimeError outside app context"
    except Skipped as reason:
        cell.skipped = str(reason)
    except Exception as error:  # one broken cell must not lose the others
        cell.skipped = f"failed: {type(error).__name__}: {error} (logs in {directory})"
    return cell


@dataclass
class Versus:
    """Ours and the peer's propagation on Redis, polled over HTTP, measured in
    alternating rounds of the same run; ``hint`` is ours on the 0.1 path."""

    ours: Cell
    peer: Cell
    hint: Cell
    load: list[float] = field(default_factory=list)  # 1-minute load before each round

    def ratio(self, quantile: str) -> float | None:
        """Ours over the peer's at ``quantile`` ("p50", "p90"); None without figures."""
        if not self.ours.latencies or not self.peer.latencies:
            return None
        return summary_ms(self.ours.latencies)[quantile] / summary_ms(self.peer.latencies)[quantile]

    def lines(self) -> list[str]:
        """The side-by-side table, then the ratios."""
        header = "| system | updates | p50 ms | p90 ms | max ms | note |\n|---|---|---|---|---|---|"
        rows = []
        for cell in (self.ours, self.peer, self.hint):
            if not cell.latencies:
                rows.append(f"| {cell.system} | {cell.attempts} | - | - | - | {cell.row()[-1]} |")
                continue
            figures = summary_ms(cell.latencies)
            missed = f"{cell.missed} not converged" if cell.missed else ""
            rows.append(
                f"| {cell.system} | {cell.attempts} | {figures['p50']:.1f} | {figures['p90']:.1f}"
                f" | {figures['max']:.1f} | {missed} |"
            )
        p50, p90 = self.ratio("p50"), self.ratio("p90")
        load = ", ".join(f"{value:.2f}" for value in self.load)
        ratio = (
            "ours / Flask-WaffleConf: no ratio (a side has no figures)"
            if p50 is None or p90 is None
            else f"ours / Flask-WaffleConf: p50 x{p50:.2f}, p90 x{p90:.2f}"
        )
        return [header, *rows, "", f"{ratio}; 1-minute load average before each round: {load}"]


async def versus(config: BenchConfig, venv: Path, rounds: int, updates: int) -> Versus:
    """``rounds`` rounds of ``updates`` updates each: ours (changes carried,
    hypercorn -w 4), the peer's (gunicorn -w 4, app-context wrapper), ours on
    the 0.1 path; Redis, the demo app's 7 settings, every worker polled."""
    ours = Cell("quart-waffle, carried", "redis", BASE_SETTINGS)
    peer = Cell("Flask-WaffleConf 0.3.1 + app-context wrapper", "redis", BASE_SETTINGS)
    hint = Cell("quart-waffle, 0.1 path (bare hint)", "redis", BASE_SETTINGS)
    result = Versus(ours, peer, hint)
    short = replace(config, updates=updates, fwc_updates=updates, cell_budget=60.0)
    for number in range(rounds):
        directory = workspace(config, f"versus-{number}")
        bus = f"waffle-bench-versus-{os.getpid()}-{number}"
        result.load.append(os.getloadavg()[0])
        for total, measured in (
            (ours, await measure_ours(short, "redis", BASE_SETTINGS, directory, bus)),
            (peer, await measure_fwc(short, venv, directory, "redis", BASE_SETTINGS, True, bus)),
            (
                hint,
                await measure_ours(
                    short, "redis", BASE_SETTINGS, directory, bus + "-hint", carried=False
                ),
            ),
        ):
            total.latencies += measured.latencies
            total.missed += measured.missed
            total.trigger = measured.trigger
            total.limit = measured.limit
            if measured.skipped is not None:
                total.skipped = measured.skipped
        print(f"  round {number + 1}/{rounds}: " + "; ".join(result.lines()[-1:]), flush=True)
    return result


async def run(config: BenchConfig) -> Section:
    section = Section("Flask-WaffleConf 0.3.1 under gunicorn -w 4 -k gthread, same run")
    print(f"\n== {section.title}", flush=True)
    try:
        venv = await asyncio.to_thread(_venv, config)
    except Skipped as reason:
        section.skip(str(reason))
        return section
    if reachable(REDIS_URL):
        head_to_head = await versus(config, venv, VERSUS_ROUNDS, max(5, config.updates // 3))
        section.data["versus"] = head_to_head
        section.lines += [
            "Side by side on Redis at the demo app's 7 settings, polled over HTTP, in"
            f" {VERSUS_ROUNDS} alternating rounds:",
            "",
            *head_to_head.lines(),
            "",
        ]
        for line in head_to_head.lines():
            print("  " + line, flush=True)
    bus = f"waffle-bench-fwc-{os.getpid()}"
    cells: list[Cell] = []
    plans: list[tuple[str, int, bool]] = []
    for watchtype in ("redis", "file"):
        plans.append((watchtype, config.fwc_settings[0], False))
        sizes = config.fwc_settings if watchtype == "redis" else config.fwc_settings[:1]
        plans.extend((watchtype, declared, True) for declared in sizes)
    directory = workspace(config, "fwc")
    for watchtype, declared, wrapper in plans:
        if watchtype == "redis" and not reachable(REDIS_URL):
            cell = Cell("Flask-WaffleConf 0.3.1", watchtype, declared)
            cell.skipped = f"Redis is not reachable at {REDIS_URL}"
        else:
            cell = await measure_fwc(config, venv, directory, watchtype, declared, wrapper, bus)
        print("  " + " | ".join(str(part) for part in cell.row()), flush=True)
        cells.append(cell)
    section.data["cells"] = cells
    section.table(HEADER, [cell.row() for cell in cells])
    section.note(
        "as shipped, its watcher thread raises 'Working outside of application context'"
        " under Flask-SQLAlchemy 3 at the first change, so other workers never see it;"
        " 'app-context wrapper' is the app wrapping each reload in app.app_context()"
    )
    section.note(
        f"its file watcher checks every {FILE_POLL:.0f} s, so file mode is measured at"
        " the smallest size only, with fewer updates (the count is in the table);"
        " every change makes each worker re-read every key, one query each"
    )
    return section


async def main(arguments: argparse.Namespace) -> None:
    config = BenchConfig()
    config.results.mkdir(parents=True, exist_ok=True)
    if not arguments.versus:
        await run(config)
        return
    venv = await asyncio.to_thread(_venv, config)
    for line in (await versus(config, venv, arguments.rounds, arguments.updates)).lines():
        print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flask_waffleconf")
    parser.add_argument(
        "--versus", action="store_true", help="only ours and the peer's side by side, on Redis"
    )
    parser.add_argument("--rounds", type=int, default=VERSUS_ROUNDS)
    parser.add_argument("--updates", type=int, default=15, help="updates per side and round")
    asyncio.run(main(parser.parse_args()))
