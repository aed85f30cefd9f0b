"""Propagation without a poller: when each worker applied an update, from its own clock.

The propagation section polls every worker over HTTP, which on 2 cores makes the workers busy
answering polls while they should be catching up. Here nobody polls while an update spreads:
each worker of ``hypercorn -w 4 tests.sync_app:app`` records (wall clock, same machine) when
it applied each revision, and the figure is the time from the update's response until the
last of the other workers applied it. An update that some worker never applied is a miss.
Run alone with ``python -m benchmarks.applied_at [--updates N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from harness import REDIS_URL, Connection, Deployment

from .common import BenchConfig, Section, Skipped, database, workspace
from .propagation import BASE_SETTINGS, HEADER, SYNC_KEY, Cell, channel_missing

SETTLE = 0.2
"""Seconds left to the workers, unobserved, before asking when they applied an update."""
LIMIT = 5.0
"""Seconds after which a worker that has not applied an update never will: a miss."""


async def applied_times(port: int, revision: int, workers: int) -> dict[int, float]:
    """Each worker's applied-at time of ``revision``, asking (each time on a new connection,
    which any worker may take) until every worker has answered or LIMIT has passed."""
    found: dict[int, float] = {}
    answered: set[int] = set()
    deadline = time.monotonic() + LIMIT
    while len(found) < workers and time.monotonic() < deadline:
        connection = await Connection.open(port)
        try:
            answer = await connection.get_json("/test/applied")
        finally:
            await connection.close()
        answered.add(answer["pid"])
        if str(revision) in answer["applied"]:
            found[answer["pid"]] = answer["applied"][str(revision)]
        elif len(answered) == workers:
            await asyncio.sleep(0.05)  # every worker seen, one not there yet
    return found


async def measure(
    cell: Cell, database_url: str, directory: Path, updates: int, workers: int
) -> None:
    """``updates`` updates through one worker; each is a latency once every other worker
    applied it, else a miss."""
    env = {
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_WATCHTYPE": cell.channel,
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": f"bench-applied-{cell.channel}-{os.getpid()}",
        "WAFFLE_WATCHER_FILE": str(directory / f"applied-{cell.channel}.revision"),
        "WAFFLE_INSTANCE_PATH": str(directory),
        "WAFFLE_SYNC_KEY": SYNC_KEY,  # changes travel in the message, as in production
    }
    log = directory / f"applied-{cell.channel}.log"
    cell.limit, cell.trigger = LIMIT, "HTTP POST through one worker"
    app = "tests.sync_app:app"
    async with Deployment(env, log, workers=workers, app=app, startup_timeout=120.0) as server:
        await server.worker_pids(within=120.0)
        writer = await Connection.open(server.port)
        try:
            for index in range(updates):
                body = json.dumps({"GREETING": f"applied-{index}"}).encode()
                headers = {"Content-Type": "application/json"}
                status, answer = await writer.request(
                    "POST", "/test/update", body=body, headers=headers
                )
                answered = time.time()
                if status != 200:
                    raise RuntimeError(f"update failed: {status} {answer[:200]!r}")
                update = json.loads(answer)
                await asyncio.sleep(SETTLE)
                times = await applied_times(server.port, update["revision"], workers)
                others = [when for pid, when in times.items() if pid != update["pid"]]
                if len(others) < workers - 1:
                    cell.missed += 1
                else:
                    cell.latencies.append(max(0.0, max(others) - answered))
        finally:
            await writer.close()


async def run(config: BenchConfig) -> Section:
    section = Section("Propagation without a poller (each worker's own applied-at clock)")
    print(f"\n== {section.title}", flush=True)
    directory = workspace(config, "unpolled")
    cells: list[Cell] = []
    for channel in config.channels:
        cell = Cell("quart-waffle, unpolled", channel, BASE_SETTINGS)
        store = "postgres" if channel == "postgres" else "sqlite"
        try:
            async with database(directory, store, f"unpolled_{channel}") as database_url:
                reason = await channel_missing(channel, database_url)
                if reason is not None:
                    raise Skipped(reason)
                await measure(cell, database_url, directory, config.updates, config.workers)
        except Skipped as reason:
            cell.skipped = str(reason)
        except Exception as error:  # one broken cell must not lose the others
            cell.skipped = f"failed: {type(error).__name__}: {error} (logs in {directory})"
        print("  " + " | ".join(str(part) for part in cell.row()), flush=True)
        cells.append(cell)
    section.data["unpolled"] = cells
    section.table(HEADER, [cell.row() for cell in cells])
    section.note(
        f"hypercorn -w {config.workers} tests.sync_app:app (the demo app's {BASE_SETTINGS}"
        f" settings); each update left {SETTLE:g} s unobserved, a miss after {LIMIT:g} s"
    )
    return section


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    bench = BenchConfig(updates=parser.parse_args().updates)
    bench.results.mkdir(parents=True, exist_ok=True)
    print("\n".join(asyncio.run(run(bench)).lines))
