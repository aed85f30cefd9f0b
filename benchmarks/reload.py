"""Rolling reloads: runs ``benchmarks/reload_bench.py`` (the supervisor's own
benchmark: ``quart-waffle serve`` + reload against plain ``hypercorn -w 4`` +
SIGHUP, same load, same run) and carries its figures into the report."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

from .harness import ROOT, BenchConfig, Section

SCRIPT = ROOT / "benchmarks" / "reload_bench.py"
LIMIT = 420.0


def _run_script() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.reload_bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        start_new_session=True,
    )


async def run(config: BenchConfig) -> Section:
    del config
    section = Section("Rolling reloads: quart-waffle serve + reload vs hypercorn -w 4 + SIGHUP")
    print(f"\n== {section.title}", flush=True)
    if not SCRIPT.exists():
        section.skip("benchmarks/reload_bench.py (the supervisor's benchmark) is not there yet")
        return section
    try:
        result = await asyncio.to_thread(_run_script)
    except subprocess.TimeoutExpired:
        section.skip(f"benchmarks/reload_bench.py did not finish within {LIMIT:.0f} s")
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
    failed = [int(count) for count in re.findall(r"(\d+) failed", output)]
    if failed:
        section.data["reload_failed"] = sum(failed)
    section.note("figures as printed by benchmarks/reload_bench.py")
    return section
