"""Propagation latency under ``hypercorn -w 4 examples.app:app``: from the
update's response until every worker serves the new value, for the redis,
file and postgres channels, against the number of declared settings.

Each worker is polled on its own keep-alive connection, so the figure does
not depend on which worker accepts. Run alone with
``python -m benchmarks.propagation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quart import Quart

from harness import (
    REDIS_URL,
    Connection,
    Deployment,
    close_all,
    connect_per_worker,
    reachable,
)
from quart_waffle import QuartWaffle, settings_changed
from quart_waffle.config import WaffleConfig
from quart_waffle.store import create_engine
from quart_waffle.sync import make_channel

from .common import (
    BenchConfig,
    Section,
    Skipped,
    database,
    fmt,
    summary_ms,
    workspace,
)

BASE_SETTINGS = 7  # the demo app's own declarations; fillers come on top
ADMIN_TOKEN = "bench-" + secrets.token_hex(8)
SYNC_KEY = "bench-sync-" + secrets.token_hex(8)
Trigger = Callable[[str], Awaitable[None]]
"""Make GREETING the given value; return once the update's response is in."""
POLL_GAP = 0.0005
WARM_UPS = 3


@dataclass
class Cell:
    """The figures of one (system, channel, settings) combination."""

    system: str
    channel: str
    declared: int
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    trigger: str = ""
    skipped: str | None = None
    limit: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.latencies) + self.missed

    def row(self) -> list[object]:
        name = [self.system, self.channel, f"{self.declared:,}"]
        if self.skipped is not None:
            return [*name, "-", "-", "-", "-", "-", f"skipped: {self.skipped}"]
        if not self.latencies:
            never = f"none converged within {self.limit:.0f} s ({self.trigger})"
            return [*name, self.attempts, "-", "-", "-", "-", never]
        figures = summary_ms(self.latencies)
        missed = f"; {self.missed} not converged in {self.limit:.0f} s" if self.missed else ""
        return [
            *name,
            self.attempts,
            fmt(figures["p50"]),
            fmt(figures["p90"]),
            fmt(figures["p99"]),
            fmt(figures["max"]),
            f"{self.trigger}{missed}",
        ]


HEADER = [
    "system",
    "channel",
    "declared",
    "updates",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "note",
]


async def measure(
    cell: Cell,
    workers: Mapping[int, Connection],
    trigger: Trigger,
    *,
    updates: int,
    budget: float,
    limit: float,
    minimum: int = 5,
    warm_ups: int = WARM_UPS,
) -> None:
    """Run ``updates`` updates (fewer once ``budget`` seconds are spent, but at
    least ``minimum``) after ``warm_ups`` unrecorded ones; each converges when
    every worker serves the value, or is counted missed after ``limit`` seconds."""
    started = time.monotonic()
    cell.limit = limit
    for index in range(updates + warm_ups):
        recorded = index >= warm_ups
        if recorded and cell.attempts >= minimum and time.monotonic() - started > budget:
            break
        value = f"bench-{index}-{secrets.token_hex(4)}"
        await trigger(value)
        sent = time.perf_counter()
        seen = await asyncio.gather(
            *(_until_value(connection, value, sent + limit) for connection in workers.values())
        )
        if not recorded:
            continue
        if any(moment is None for moment in seen):
            cell.missed += 1
        else:
            cell.latencies.append(max(moment for moment in seen if moment is not None) - sent)
        # a random pause, so an update does not always land just after a file check
        await asyncio.sleep(random.uniform(0.01, 0.06))


async def _until_value(connection: Connection, value: str, deadline: float) -> float | None:
    while True:
        answer = await connection.get_json("/whoami")
        now = time.perf_counter()
        if answer["settings"]["GREETING"] == value:
            return now
        if now > deadline:
            return None
        await asyncio.sleep(POLL_GAP)


# Our deployment.


async def channel_missing(watchtype: str, database_url: str) -> str | None:
    """Why ``watchtype`` cannot run here, or None."""
    if watchtype == "redis" and not reachable(REDIS_URL):
        return f"Redis is not reachable at {REDIS_URL}"
    config = WaffleConfig.resolve(
        Quart("probe"), {"watchtype": watchtype, "database_url": database_url}
    )
    engine = create_engine(database_url)
    try:
        make_channel(config, engine)
    except Exception as error:
        return f"channel {watchtype!r} not available: {error}"
    finally:
        await engine.dispose()
    return None


def _options(
    watchtype: str,
    database_url: str,
    directory: Path,
    channel: str,
    name: str,
    *,
    carried: bool = True,
) -> dict[str, Any]:
    """WAFFLE_* options of a deployment; with ``carried``, a sync key, as a
    production deployment has (``SECRET_KEY`` or ``WAFFLE_SYNC_KEY``), so
    changes travel in the message; without, bare hints (the 0.1 path)."""
    return {
        "database_url": database_url,
        "watchtype": watchtype,
        # one file per deployment: a revision left by an earlier database
        # would hold back the notices of a fresh one
        "watcher_file": str(directory / f"{name}.revision"),
        "redis_url": REDIS_URL,
        "redis_channel": channel,
        **({"sync_key": SYNC_KEY} if carried else {}),
    }


def deployment(
    options: Mapping[str, Any], filler: int, directory: Path, workers: int, log_name: str
) -> Deployment:
    """``hypercorn -w N examples.app:app`` with ``options`` as WAFFLE_* variables."""
    env = {f"WAFFLE_{name.upper()}": str(value) for name, value in options.items()}
    env |= {
        "WAFFLE_FILLER_SETTINGS": str(filler),
        "WAFFLE_INSTANCE_PATH": str(directory),
        "WAFFLE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    log = directory / f"{log_name}.log"
    args = ["--keep-alive", "600"]
    return Deployment(env, log, workers=workers, args=args, startup_timeout=120.0)


@contextlib.asynccontextmanager
async def our_trigger(port: int, options: Mapping[str, Any]) -> AsyncIterator[tuple[Trigger, str]]:
    """Update through the HTTP admin of a worker when the deployment has one,
    else with the Python API from this process (it commits and notifies as a
    worker does)."""
    admin = await Connection.open(port)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}

    async def through_admin(value: str) -> None:
        body = json.dumps({"value": value}).encode()
        status, answer = await admin.request(
            "PUT", "/waffle/api/settings/GREETING", body=body, headers=headers
        )
        if status != 200:
            raise RuntimeError(f"admin update failed: {status} {answer[:200]!r}")

    try:
        try:
            await through_admin("probe")
        except RuntimeError:
            pass
        else:
            yield through_admin, "HTTP admin PUT"
            return
        app = Quart("bench-updater")
        app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello, world!"}}
        updater = QuartWaffle(app, admin_prefix="", **options)

        async def through_api(value: str) -> None:
            await updater.update({"GREETING": value}, actor="benchmark")

        async with updater.connected():
            yield through_api, "Python API"
    finally:
        await admin.close()


async def measure_ours(
    config: BenchConfig,
    channel: str,
    declared: int,
    directory: Path,
    bus: str,
    *,
    carried: bool = True,
    system: str = "quart-waffle",
) -> Cell:
    """Our deployment's propagation, polled; with ``carried`` False, the 0.1
    path (no sync key: a bare hint, then every worker reads the store)."""
    cell = Cell(system, channel, max(declared, BASE_SETTINGS))
    store = "postgres" if channel == "postgres" else "sqlite"
    name = f"{channel}-{declared}" + ("" if carried else "-hint")
    try:
        async with database(directory, store, f"prop_{name.replace('-', '_')}") as database_url:
            reason = await channel_missing(channel, database_url)
            if reason is not None:
                raise Skipped(reason)
            options = _options(channel, database_url, directory, bus, name, carried=carried)
            filler = max(0, declared - BASE_SETTINGS)
            log_name = f"ours-{name}"
            async with deployment(options, filler, directory, config.workers, log_name) as server:
                workers = await connect_per_worker(server.port, config.workers)
                try:
                    async with our_trigger(server.port, options) as (trigger, how):
                        cell.trigger = how
                        await measure(
                            cell,
                            workers,
                            trigger,
                            updates=config.updates,
                            budget=config.cell_budget,
                            limit=5.0,
                        )
                finally:
                    await close_all(list(workers.values()))
    except Skipped as reason:
        cell.skipped = str(reason)
    except Exception as error:  # one broken cell must not lose the others
        cell.skipped = f"failed: {type(error).__name__}: {error} (logs in {directory})"
    return cell


async def in_process(channel: str, directory: Path, bus: str) -> list[float]:
    """The same pipeline with no HTTP and no other process: one extension
    updates, a second one (its sync task running) catches up; seconds from
    the update's return until the second serves the new revision."""
    store = "postgres" if channel == "postgres" else "sqlite"
    async with database(directory, store, f"inprocess_{channel}") as database_url:
        reason = await channel_missing(channel, database_url)
        if reason is not None:
            raise Skipped(reason)
        options = _options(channel, database_url, directory, bus, f"in-process-{channel}")
        extensions = []
        for name in ("reader", "writer"):
            app = Quart(f"bench-{name}")
            app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello, world!"}}
            extensions.append(QuartWaffle(app, admin_prefix="", **options))
        reader, writer = extensions
        latencies: list[float] = []
        applied: dict[int, float] = {}
        arrived = asyncio.Event()

        async def on_change(_sender: Quart, revision: int, **_: Any) -> None:
            applied[revision] = time.perf_counter()
            arrived.set()

        settings_changed.connect(on_change, sender=reader.app)
        await reader.start(watch=True)
        try:
            async with writer.connected():
                for index in range(30 + WARM_UPS):
                    arrived.clear()
                    revision = await writer.update({"GREETING": f"in-process-{index}"})
                    sent = time.perf_counter()
                    async with asyncio.timeout(10):
                        while revision not in applied:
                            await arrived.wait()
                            arrived.clear()
                    if index >= WARM_UPS:
                        latencies.append(max(0.0, applied[revision] - sent))
                    await asyncio.sleep(random.uniform(0.01, 0.06))
        finally:
            await reader.stop()
            settings_changed.disconnect(on_change, sender=reader.app)
        return latencies


async def run(config: BenchConfig) -> Section:
    section = Section("Propagation latency under hypercorn -w 4 (quart-waffle)")
    print(f"\n== {section.title}", flush=True)
    cells: list[Cell] = []
    bus = f"waffle-bench-{os.getpid()}"
    directory = workspace(config, "propagation")
    for channel in config.channels:
        for declared in config.settings:
            cell = await measure_ours(config, channel, declared, directory, bus)
            print("  " + " | ".join(str(part) for part in cell.row()), flush=True)
            cells.append(cell)
    section.data["cells"] = cells
    section.table(HEADER, [cell.row() for cell in cells])
    floor_rows: list[list[object]] = []
    for channel in config.channels:
        try:
            latencies = await in_process(channel, directory, bus)
        except Skipped as reason:
            floor_rows.append([channel, f"skipped: {reason}", "-", "-"])
            continue
        except Exception as error:  # a reference figure lost must not lose the section
            floor_rows.append([channel, f"failed: {type(error).__name__}: {error}", "-", "-"])
            continue
        figures = summary_ms(latencies)
        section.data.setdefault("floor", {})[channel] = figures["p90"]
        floor_rows.append([channel, fmt(figures["p50"]), fmt(figures["p90"]), fmt(figures["max"])])
    section.lines.append(
        "The same pipeline in one process (no HTTP, no worker scheduling), for reference:"
    )
    section.lines.append("")
    section.table(["channel", "p50 ms", "p90 ms", "max ms"], floor_rows)
    section.note(
        "stores: SQLite (WAL) for the redis and file channels, PostgreSQL for postgres;"
        f" {BASE_SETTINGS} is the demo app's own declarations (no fillers)"
    )
    return section


if __name__ == "__main__":
    BenchConfig().results.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(BenchConfig()))
