"""Run every benchmark, bounded, and write the Markdown report and PNG plots.

python -m benchmarks                    # everything, a few minutes on 2 cores
python -m benchmarks --quick            # fewer sizes and updates
python -m benchmarks --only core,throughput
python -m benchmarks --publish          # everything, then docs/benchmarks.md, docs/images/
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable

from harness import ROOT

from . import (
    applied_at,
    core_bench,
    flask_waffleconf,
    fleet,
    fleet_wait,
    propagation,
    reload,
    throughput,
)
from .common import BenchConfig, Section
from .report import markdown, plots

SECTIONS: dict[str, Callable[[BenchConfig], Awaitable[Section]]] = {
    "core": core_bench.run,
    "propagation": propagation.run,
    "unpolled": applied_at.run,
    "fwc": flask_waffleconf.run,
    "throughput": throughput.run,
    "reload": reload.run,
    "fleet": fleet.run,
    "fleet_wait": fleet_wait.run,
}
DOCS = ROOT / "docs" / "benchmarks.md"
DOCS_INTRO = """# Benchmarks

How fast every worker sees a change, what the extension costs per request, and
whether it holds from a handful to 10,000 declared settings, measured side by
side with Flask-WaffleConf 0.3.1 in the same run.

## Reproduce

```sh
make bench                   # or: .venv/bin/python -m benchmarks (about 20 minutes)
.venv/bin/python -m benchmarks --quick        # a smaller run (about 4 minutes)
.venv/bin/python -m benchmarks --only core    # one section; see below
```

Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432 are used when they
answer (`WAFFLE_TEST_REDIS_URL`, `WAFFLE_TEST_POSTGRES_URL`, as for the tests); a section whose
service is missing prints `skipped: reason`. `wrk` (`apt-get install wrk`)
drives the throughput runs when installed, else an asyncio client does. The
Flask-WaffleConf comparison installs Flask-WaffleConf 0.3.1, Flask 3,
Flask-SQLAlchemy 3, gunicorn and redis from PyPI into its own virtualenv
(`benchmarks/results/.fwc-venv`, kept between runs). The report and plots
land in `benchmarks/results/`; `--publish` copies them here.

## What is measured

- **Core**: the cost of reading a setting on the request path against a plain
  dict lookup, and of one worker's `refresh()` after another changed one key,
  with 10 and 10,000 declared settings, on SQLite and PostgreSQL.
- **Propagation**: `hypercorn -w 4 examples.app:app`; an update of `GREETING`
  (through the HTTP admin, `PUT /waffle/api/settings/GREETING`, when the app
  has it, else with the Python API from the benchmark process), then each
  worker is polled on its own keep-alive connection until it serves the new
  value. The figure is the time from the update's response until the last
  worker serves it. The smallest size is the demo app's own 7 settings.
- **Flask-WaffleConf 0.3.1**: a Flask 3 app with the same declarations under
  `gunicorn -w 4 -k gthread`, updated through its `update_db()`, measured as
  it ships and with the app wrapping each reload in an app context (without
  it the watcher thread dies under Flask-SQLAlchemy 3).
- **Throughput**: `GET /` (reads two settings through `current_app.config`)
  with the extension and on a bare Quart app, same Hypercorn settings, runs
  interleaved; memory per worker from `/proc`.
- **Rolling reloads**: `benchmarks/reload_bench.py`.
- **Fleet** (`benchmarks/fleet.py`): the fleet simulator, P processes x K
  `QuartWaffle` instances, each with its own engine and channel exactly as a
  worker has them, and one writer; p50/p90/max until every instance applied
  an update, CPU per worker per change, database transactions per change and
  database connections held while idle, at 32, 128 and 256 workers on SQLite
  and 160 on PostgreSQL. Each size runs twice in the same run: changes carried
  in a signed message, and the 0.1 path (a bare hint, then a catch-up from the
  store) as the baseline.
- **Fleet wait** (`benchmarks/fleet_wait.py`): at 256 simulated workers,
  how long `waffle.update(..., wait=...)` takes to return with every worker
  acknowledged, against the propagation time measured in the same run; how
  long one fleet view takes; and presence writes per worker per minute while
  nothing changes.
- **Polled head to head**: the Flask-WaffleConf section also runs both
  libraries on Redis in alternating rounds, each polled over HTTP the same way
  (`python -m benchmarks.flask_waffleconf --versus`).
- **Servers**: `python -m benchmarks.peers` (not part of this report, about
  10 minutes) serves the same app under every worker class of
  `quart-waffle serve` and under uvicorn, gunicorn, granian, hypercorn and
  Flask-WaffleConf's gunicorn, each installed in its own virtualenv, and
  prints requests served, failures and p99 latency steady and during reloads;
  its figures are in [the supervisor docs](supervisor.md).
- **Propagation without a poller**: polling four workers over HTTP on two
  cores keeps them busy answering polls while they should be catching up, so
  that figure includes the observer. Here nobody polls while an update
  spreads: each worker of `hypercorn -w 4` records on its own clock when it
  applied each revision, and the figure is the time from the update's
  response until the last other worker applied it. An update some worker
  never applied within 5 s is a miss.

Every section is bounded: at most 50 updates and 20 s of updates per
propagation cell (Flask-WaffleConf's file mode, which checks every 10 s, gets
45 s and is measured at the smallest size only), 8 interleaved throughput
rounds of 2 s, and the reload benchmark with `--requests 10000 --reloads 3
--max-seconds 45` (the issue's full reload run is `python -m
benchmarks.reload_bench --requests 100000 --reloads 10`).

Every target has a verdict row: MISSED when its figure misses the target, and
also when its cell failed, was cut short (fewer updates, reloads or requests
than asked) or had updates that never reached every worker. The load average
in the table is measured before the first benchmark starts; when it exceeds
the cores, the report says so above the targets. Every figure below comes from
the run it names: this page is the report that `--publish` wrote, and other
pages link here rather than copy figures.

## Latest results

"""


def _config(arguments: argparse.Namespace) -> BenchConfig:
    config = BenchConfig()
    if arguments.quick:
        config.settings = (1, 1_000)
        config.updates = 20
        config.fwc_settings = (1, 100)
        config.fwc_updates = 20
        config.cell_budget = 8.0
        config.throughput_rounds = 4
        config.reload_requests = 5_000
        config.reload_reloads = 2
        config.reload_max_seconds = 30.0
    if arguments.settings:
        config.settings = tuple(int(size) for size in arguments.settings.split(","))
        config.fwc_settings = config.settings
    if arguments.updates:
        config.updates = config.fwc_updates = arguments.updates
    return config


async def _main(arguments: argparse.Namespace) -> int:
    config = _config(arguments)
    config.results.mkdir(parents=True, exist_ok=True)
    chosen = arguments.only.split(",") if arguments.only else list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    if arguments.publish and (arguments.only or arguments.settings or arguments.updates):
        print("--publish writes the docs' report: it runs every section as configured")
        return 2
    command = "python -m benchmarks " + " ".join(sys.argv[1:])
    load_at_start = os.getloadavg()  # before anything of ours runs
    started = time.monotonic()
    sections: dict[str, Section] = {}
    for name in chosen:
        try:
            sections[name] = await SECTIONS[name](config)
        except Exception as error:  # one broken section must not lose the others
            section = Section(name)
            section.skip(f"failed: {type(error).__name__}: {error}")
            sections[name] = section
    elapsed = time.monotonic() - started
    images = plots(list(sections.values()), config.results)

    def report(shown: list[str], prefix: str = "") -> str:
        return markdown(
            sections,
            shown,
            config=config,
            command=command.strip(),
            elapsed=elapsed,
            load_at_start=load_at_start,
            image_prefix=prefix,
        )

    text = report(images)
    (config.results / "report.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\nwritten: {config.results / 'report.md'} and {', '.join(images) or 'no plots'}")
    if arguments.publish:
        images_dir = ROOT / "docs" / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        for image in images:
            shutil.copyfile(config.results / image, images_dir / f"benchmarks-{image}")
        published = report([f"benchmarks-{image}" for image in images], "images/")
        DOCS.write_text(DOCS_INTRO + published + "\n")
        print(f"published: {DOCS}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and updates")
    parser.add_argument("--only", help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--settings", help="declared settings, e.g. 1,100,1000,10000")
    parser.add_argument("--updates", type=int, help="updates per propagation cell")
    parser.add_argument(
        "--publish", action="store_true", help="write docs/benchmarks.md and docs/images/"
    )
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
