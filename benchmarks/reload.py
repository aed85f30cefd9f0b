"""Rolling reloads: the supervisor's own benchmark (``benchmarks/reload_bench.py``:
``quart-waffle serve`` + reload, with Hypercorn and with uvicorn workers, against plain
``hypercorn -w 4`` + SIGHUP, same load, same run; the peers are ``benchmarks/peers.py``),
each cell run here and reported with what was asked and what was done."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .common import BenchConfig, Section
from .reload_bench import HEADER, Options, Result, contenders, failures, measure, row

CELL_SLACK = 180.0
"""Seconds a cell may take beyond its load (start-up, the last reload, shutting down)."""


@dataclass
class ReloadFigures:
    """What the reload verdicts need: what was asked, what each cell did or why it failed."""

    requests: int
    reloads: int
    results: list[Result] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """{"server, mode": why the cell did not finish}."""


async def run(config: BenchConfig) -> Section:
    section = Section("Rolling reloads: quart-waffle serve + reload vs hypercorn -w 4 + SIGHUP")
    print(f"\n== {section.title}", flush=True)
    options = Options(
        app="examples.app:app",
        workers=config.workers,
        clients=10,
        requests=config.reload_requests,
        reloads=config.reload_reloads,
        max_seconds=config.reload_max_seconds,
    )
    figures = ReloadFigures(options.requests, options.reloads)
    section.data["reload"] = figures
    for contender in contenders(options):
        for keep_alive in (False, True):
            mode = "keep-alive" if keep_alive else "new connection per request"
            try:
                async with asyncio.timeout(options.max_seconds + CELL_SLACK):
                    result = await measure(options, contender, keep_alive)
            except Exception as error:  # one broken cell must not lose the others
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                figures.failed[f"{contender.name}, {mode}"] = reason
                print(f"  {contender.name}, {mode}: failed: {reason}", flush=True)
                continue
            figures.results.append(result)
            print(f"  {failures(result)}", flush=True)
    section.table(HEADER, [row(result) for result in figures.results])
    section.lines += [f"- {failures(result)}" for result in figures.results]
    section.lines += [f"- {cell}: failed: {why}" for cell, why in figures.failed.items()]
    section.lines.append("")
    section.note(
        f"asked per cell: at least {options.requests:,} requests and {options.reloads} reloads"
        f" within {options.max_seconds:.0f} s, {options.clients} clients"
        " (the issue's full run: python -m benchmarks.reload_bench --requests 100000 --reloads 10)"
    )
    return section
