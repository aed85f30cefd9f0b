"""The cost of reading a setting on the request path, and of catching up
after one change, with 10 and with 10,000 declared settings.

Run alone with ``python -m benchmarks.core_bench``; takes seconds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from quart import Quart, current_app

from quart_waffle import QuartWaffle
from quart_waffle.store import SettingsStore, create_engine

from .common import BenchConfig, Section, Skipped, database, fmt

SIZES = (10, 10_000)
CATCH_UPS = 30
READS = 200_000


def _confs(size: int) -> dict[str, dict[str, Any]]:
    confs: dict[str, dict[str, Any]] = {"GREETING": {"default": "Hello"}}
    confs.update({f"FILLER_{index}": {"default": index} for index in range(size - 1)})
    return confs


def _waffle(url: str, size: int) -> QuartWaffle:
    app = Quart("core-bench")
    app.config["WAFFLE_CONFS"] = _confs(size)
    return QuartWaffle(app, database_url=url, watchtype="none", admin_prefix="")


def _ns_per_read(statement: str, namespace: dict[str, Any]) -> float:
    best = min(timeit.repeat(statement, globals=namespace, number=READS, repeat=5))
    return best / READS * 1e9


async def measure_reads(size: int) -> dict[str, float]:
    """ns per read: a plain dict (the baseline), ``waffle.get``, ``app.config[...]``
    and ``current_app.config[...]`` inside an app context."""
    waffle = _waffle("sqlite:///core-bench.db", size)  # never connected: reads only
    app = waffle.app
    assert app is not None
    plain = dict(app.config)
    namespace = {"plain": plain, "waffle": waffle, "app": app, "current_app": current_app}
    figures = {
        "dict baseline": _ns_per_read("plain['GREETING']", namespace),
        "waffle.get(key)": _ns_per_read("waffle.get('GREETING')", namespace),
        "app.config[key]": _ns_per_read("app.config['GREETING']", namespace),
    }
    async with app.app_context():
        figures["current_app.config[key]"] = _ns_per_read(
            "current_app.config['GREETING']", namespace
        )
    return figures


async def measure_catch_up(url: str, size: int) -> dict[str, float]:
    """One worker changes one key; time the other worker's ``refresh()``."""
    reader, writer = _waffle(url, size), _waffle(url, size)
    store = SettingsStore(create_engine(url))
    times: list[float] = []
    rows: list[int] = []
    try:
        async with writer.connected(), reader.connected():
            for attempt in range(CATCH_UPS):
                before = reader.revision
                await writer.update({"GREETING": f"Hello {attempt}"})
                rows.append(len(await store.changes_since(before)))
                started = time.perf_counter()
                await reader.refresh()
                times.append(time.perf_counter() - started)
                assert reader.get("GREETING") == f"Hello {attempt}"
            started = time.perf_counter()
            everything = await store.changes_since(-1)
            full_read = time.perf_counter() - started
    finally:
        await store.engine.dispose()
    return {
        "refresh_ms_p50": statistics.median(times) * 1000,
        "refresh_ms_max": max(times) * 1000,
        "rows": statistics.median(rows),
        "full_rows": len(everything),
        "full_read_ms": full_read * 1000,
    }


async def run(config: BenchConfig) -> Section:
    section = Section("Core: reading a setting, catching up after one change")
    print(f"\n== {section.title}", flush=True)
    read_rows = []
    for size in SIZES:
        figures = await measure_reads(size)
        read_rows.append([f"{size:,}", *(fmt(value) for value in figures.values())])
        section.data.setdefault("reads", {})[size] = figures
    section.table(
        [
            "declared",
            "plain dict (ns)",
            "waffle.get (ns)",
            "app.config[key] (ns)",
            "current_app.config[key] (ns)",
        ],
        read_rows,
    )
    catch_rows = []
    with tempfile.TemporaryDirectory(dir=config.results) as directory:
        for backend in ("sqlite", "postgresql"):
            for size in SIZES:
                store = "sqlite" if backend == "sqlite" else "postgres"
                try:
                    async with database(Path(directory), store, f"core_{size}") as url:
                        figures = await measure_catch_up(url, size)
                except Skipped as reason:
                    section.note(f"{backend}: skipped: {reason}")
                    break
                section.data.setdefault("catch_up", {})[(backend, size)] = figures
                catch_rows.append(
                    [
                        backend,
                        f"{size:,}",
                        fmt(figures["refresh_ms_p50"], 2),
                        fmt(figures["refresh_ms_max"], 2),
                        int(figures["rows"]),
                        f"{fmt(figures['full_read_ms'], 2)} ({int(figures['full_rows']):,} rows)",
                    ]
                )
    section.table(
        [
            "store",
            "declared",
            "refresh() p50 (ms)",
            "refresh() max (ms)",
            "rows read",
            "full read, for contrast (ms)",
        ],
        catch_rows,
    )
    section.note(
        f"reads: best of 5 x {READS:,} in one process; catch-up: {CATCH_UPS} changes of one key,"
        " each made by a second extension on the same database, then the first one's refresh()"
    )
    print("\n".join(section.lines), flush=True)
    return section


if __name__ == "__main__":
    RESULTS_DIR = BenchConfig().results
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(BenchConfig()))
