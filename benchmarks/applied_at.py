"""Propagation without a poller: when each worker applied an update, from its own clock.

``python -m benchmarks.applied_at [--updates N]``. The propagation benchmark
polls every worker over HTTP, which on 2 cores makes the workers busy
answering polls while they should be catching up. Here nobody polls: each
worker of ``hypercorn -w 4 tests.sync_app:app`` records (wall clock, same
machine) when it applied each revision, and the figure is the time from the
update's response until the last of the other workers applied it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from harness import REDIS_URL, Connection, Deployment

from .common import RESULTS, database, fmt, summary_ms

WORKERS = 4


async def applied_times(port: int, revision: int, within: float = 10.0) -> dict[int, float]:
    """Each worker's applied-at time of ``revision``, asking until all have answered."""
    found: dict[int, float] = {}
    deadline = time.monotonic() + within
    while len(found) < WORKERS and time.monotonic() < deadline:
        connection = await Connection.open(port)  # a new connection: any worker may take it
        try:
            answer = await connection.get_json("/test/applied")
        finally:
            await connection.close()
        if str(revision) in answer["applied"]:
            found[answer["pid"]] = answer["applied"][str(revision)]
    return found


async def measure(channel: str, database_url: str, directory: Path, updates: int) -> list[float]:
    env = {
        "WAFFLE_DATABASE_URL": database_url,
        "WAFFLE_WATCHTYPE": channel,
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": f"bench-applied-{channel}-{directory.name}",
        "WAFFLE_WATCHER_FILE": str(directory / f"{channel}.revision"),
        "WAFFLE_INSTANCE_PATH": str(directory),
    }
    log = directory / f"{channel}.log"
    async with Deployment(env, log, workers=WORKERS, app="tests.sync_app:app") as server:
        port = server.port
        writer = await Connection.open(port)
        latencies: list[float] = []
        try:
            for index in range(updates):
                body = json.dumps({"GREETING": f"applied-{index}"}).encode()
                headers = {"Content-Type": "application/json"}
                status, answer = await writer.request(
                    "POST", "/test/update", body=body, headers=headers
                )
                answered = time.time()
                updater = json.loads(answer)["pid"]
                await asyncio.sleep(0.2)  # let every worker apply it, unobserved
                times = await applied_times(port, json.loads(answer)["revision"])
                others = [when for pid, when in times.items() if pid != updater]
                if status == 200 and len(others) == WORKERS - 1:
                    latencies.append(max(others) - answered)
        finally:
            await writer.close()
        return latencies


async def main(updates: int) -> None:
    directory = RESULTS / "work" / "applied_at"
    directory.mkdir(parents=True, exist_ok=True)
    print(f"| channel | updates | p50 ms | p90 ms | p99 ms | max ms |  (hypercorn -w {WORKERS})")
    print("|---|---|---|---|---|---|")
    for channel in ("redis", "postgres", "file"):
        store = "postgres" if channel == "postgres" else "sqlite"
        async with database(directory, store, f"applied_{channel}") as database_url:
            latencies = await measure(channel, database_url, directory, updates)
        figures = summary_ms(latencies)
        cells = [fmt(figures[name]) for name in ("p50", "p90", "p99", "max")]
        print(f"| {channel} | {len(latencies)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    asyncio.run(main(parser.parse_args().updates))
