"""Rolling reloads: runs ``benchmarks/reload_bench.py`` (the supervisor's own
benchmark: ``quart-waffle serve`` + reload against plain ``hypercorn -w 4`` +
SIGHUP, same load, same run) and carries its figures into the report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

from harness import ROOT

from .common import BenchConfig, Section

SCRIPT = ROOT / "benchmarks" / "reload_bench.py"
CELLS = 4  # two servers, two connection modes


def _run_script(config: BenchConfig, limit: float) -> subprocess.CompletedProcess[str]:
    argv = [
        *(sys.executable, "-m", "benchmarks.reload_bench"),
        *("--requests", str(config.reload_requests)),
        *("--reloads", str(config.reload_reloads)),
        *("--max-seconds", str(config.reload_max_seconds)),
    ]
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            # SIGINT first, so its own clean-up stops the servers it started
            for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.communicate(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def column(table: list[str], server: str, name: str) -> list[float]:
    """Column ``name`` of the rows whose server starts with ``server``, as numbers."""
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    if name not in header:
        return []
    index = header.index(name)
    found = []
    for row in table[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if cells[0].startswith(server):
            found.append(float(cells[index].removesuffix("ms").replace(",", "").strip()))
    return found


async def run(config: BenchConfig) -> Section:
    section = Section("Rolling reloads: quart-waffle serve + reload vs hypercorn -w 4 + SIGHUP")
    print(f"\n== {section.title}", flush=True)
    if not SCRIPT.exists():
        section.skip("benchmarks/reload_bench.py (the supervisor's benchmark) is not there yet")
        return section
    limit = CELLS * config.reload_max_seconds + 180
    try:
        result = await asyncio.to_thread(_run_script, config, limit)
    except subprocess.TimeoutExpired:
        section.skip(f"benchmarks/reload_bench.py did not finish within {limit:.0f} s")
        return section
    output = result.stdout.strip()
    print(output, flush=True)
    if result.returncode != 0:
        section.skip(
            f"benchmarks/reload_bench.py exited {result.returncode}: {result.stderr[-500:]!r}"
        )
        return section
    tables = [line for line in output.splitlines() if line.startswith("|")]
    if tables:
        section.lines += [*tables, ""]
    else:
        section.lines += ["```", output, "```", ""]
    if tables:
        failed = column(tables, "quart-waffle", "failed")
        worst = column(tables, "quart-waffle", "worst latency during reloads")
        if failed:
            section.data["reload_failed"] = int(sum(failed))
        if worst:
            section.data["reload_worst_ms"] = max(worst)
    section.lines += [line for line in output.splitlines() if "requests failed over" in line]
    section.lines.append("")
    section.note(
        f"figures as printed by benchmarks/reload_bench.py --requests {config.reload_requests}"
        f" --reloads {config.reload_reloads} --max-seconds {config.reload_max_seconds:.0f}"
        " (the issue's full run is --requests 100000 --reloads 10)"
    )
    return section
