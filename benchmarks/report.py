"""The Markdown report, the target verdicts and the PNG plots."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .common import Section, summary_ms
from .propagation import Cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FAST_CHANNELS = ("redis", "postgres")


def machine() -> dict[str, str]:
    """Where the figures come from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu,
        "memory": memory,
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
        "commit": _git("rev-parse", "--short", "HEAD"),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cells(sections: Sequence[Section]) -> list[Cell]:
    cells: list[Cell] = []
    for section in sections:
        cells.extend(section.data.get("cells", []))
    return cells


def verdicts(sections: Sequence[Section], load: float | None = None) -> list[list[str]]:
    """One row per target: target, figure, verdict, and why when missed."""
    rows: list[list[str]] = []
    ours = [cell for cell in _cells(sections) if cell.system == "quart-waffle"]
    measured = [cell for cell in ours if cell.latencies]
    floor: dict[str, float] = {}
    catch_up: dict[tuple[str, int], dict[str, float]] = {}
    for section in sections:
        floor.update(section.data.get("floor", {}))
        catch_up.update(section.data.get("catch_up", {}))
    cores = os.cpu_count() or 1
    busy = (
        f"the machine was busy (load average {load:.1f} on {cores} cores)"
        if load is not None and load > cores
        else ""
    )
    for channel in (*FAST_CHANNELS, "file"):
        cells = sorted(
            (cell for cell in measured if cell.channel == channel), key=lambda c: c.declared
        )
        if not cells:
            skipped = [cell.skipped for cell in ours if cell.channel == channel and cell.skipped]
            reason = skipped[0] if skipped else "not run"
            rows.append([f"{channel} propagation", "-", "not measured", reason])
            continue
        if channel == "file":
            checks = [(cell, 150.0) for cell in cells]
        else:
            checks = [(cells[0], 5.0)] + [(cell, 10.0) for cell in cells if cell.declared >= 10_000]
        for cell, bound in checks:
            p90 = summary_ms(cell.latencies)["p90"]
            missed = f"; {cell.missed} updates never converged" if cell.missed else ""
            met = p90 < bound and not cell.missed
            why: list[str] = []
            if not met:
                if busy:
                    why.append(busy)
                if channel in floor:
                    why.append(
                        f"the same pipeline in one process, no HTTP: p90 {floor[channel]:.1f} ms"
                    )
                if channel in FAST_CHANNELS:
                    why.append(
                        "polling 4 workers over HTTP competes with their catch-up for the"
                        " 2 cores; unpolled figures: python -m benchmarks.applied_at"
                    )
                store = "postgresql" if channel == "postgres" else "sqlite"
                small, large = catch_up.get((store, 10)), catch_up.get((store, 10_000))
                slower = small and large and large["refresh_ms_p50"] > 1.5 * small["refresh_ms_p50"]
                if cell.declared >= 10_000 and small and large and slower:
                    why.append(
                        f"one worker's refresh() reading 1 row costs"
                        f" {large['refresh_ms_p50']:.1f} ms at 10,000 settings against"
                        f" {small['refresh_ms_p50']:.1f} ms at 10 (see the core section)"
                    )
                if not why:
                    why.append("HTTP and scheduling of 4 workers and the poller on the cores")
            rows.append(
                [
                    f"{channel} p90 < {bound:.0f} ms at {cell.declared:,} settings",
                    f"{p90:.1f} ms{missed}",
                    "met" if met else "MISSED",
                    "; ".join(why),
                ]
            )
    for section in sections:
        throughput = section.data.get("throughput", {})
        bare_rates = throughput.get("bare Quart")
        for name, ratio in section.data.get("throughput_ratio", {}).items():
            if not name.startswith("quart-waffle") or not bare_rates:
                continue
            bare = sum(bare_rates) / len(bare_rates)
            spread = (max(bare_rates) - min(bare_rates)) / bare
            reasons: list[str] = []
            if ratio < 0.97:
                reasons.append(f"bare Quart's own rounds spread {spread:.0%}")
                reasons += [busy] if busy else []
                if 1 - ratio > spread:
                    reasons.append("the gap is larger than that spread: a real cost")
            rows.append(
                [
                    f"throughput, {name}, >= 97% of bare Quart",
                    f"{ratio:.1%}",
                    "met" if ratio >= 0.97 else "MISSED",
                    "; ".join(reasons),
                ]
            )
        if "reload_failed" in section.data:
            failed = section.data["reload_failed"]
            rows.append(
                [
                    "zero failed requests during reloads (quart-waffle serve)",
                    str(failed),
                    "met" if not failed else "MISSED",
                    "",
                ]
            )
        if "reload_worst_ms" in section.data:
            worst = section.data["reload_worst_ms"]
            rows.append(
                [
                    "worst latency during reloads < 250 ms (quart-waffle serve)",
                    f"{worst:,.0f} ms",
                    "met" if worst < 250 else "MISSED",
                    busy if worst >= 250 else "",
                ]
            )
    return rows


def _save(figure: Figure, directory: Path, name: str) -> str:
    """Write ``figure`` to ``directory/name``, release it, and return ``name``."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(directory / name, dpi=100)
    plt.close(figure)
    return name


def plots(sections: Sequence[Section], directory: Path) -> list[str]:
    """Write the PNGs; return their file names (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  plots skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return []
    written: list[str] = []
    cells = [cell for cell in _cells(sections) if cell.latencies]
    if cells:
        figure, axis = plt.subplots(figsize=(8, 5))
        series: dict[str, list[Cell]] = {}
        for cell in cells:
            series.setdefault(f"{cell.system}, {cell.channel}", []).append(cell)
        for label, members in series.items():
            members.sort(key=lambda cell: cell.declared)
            xs = [cell.declared for cell in members]
            axis.plot(
                xs,
                [summary_ms(cell.latencies)["p90"] for cell in members],
                marker="o",
                label=f"{label} (p90)",
            )
        axis.axhline(5, color="grey", linestyle=":", linewidth=1, label="target 5 ms")
        axis.axhline(10, color="grey", linestyle="--", linewidth=1, label="target 10 ms")
        axis.axhline(150, color="grey", linestyle="-.", linewidth=1, label="target 150 ms (file)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("declared settings")
        axis.set_ylabel("propagation p90 (ms, log)")
        axis.set_title("Update response to every worker serving it (4 workers)")
        axis.legend(fontsize=7)
        axis.grid(True, which="both", alpha=0.3)
        written.append(_save(figure, directory, "propagation.png"))
    for section in sections:
        throughput = section.data.get("throughput")
        if not throughput:
            continue
        figure, axis = plt.subplots(figsize=(7, 4))
        names = list(throughput)
        means = [sum(rates) / len(rates) for rates in throughput.values()]
        axis.bar(names, means, color=["grey", "tab:blue", "tab:orange", "tab:green"][: len(names)])
        for index, rates in enumerate(throughput.values()):
            axis.scatter([index] * len(rates), rates, color="black", s=12, zorder=3)
        axis.set_ylabel("requests per second (GET /)")
        axis.set_title("Throughput, hypercorn -w 4 (bars: mean; dots: rounds)")
        axis.tick_params(axis="x", labelsize=8)
        written.append(_save(figure, directory, "throughput.png"))
    for section in sections:
        catch_up = section.data.get("catch_up")
        if not catch_up:
            continue
        figure, axis = plt.subplots(figsize=(7, 4))
        for backend in sorted({backend for backend, _size in catch_up}):
            sizes = sorted(size for name, size in catch_up if name == backend)
            axis.plot(
                sizes,
                [catch_up[(backend, size)]["refresh_ms_p50"] for size in sizes],
                marker="o",
                label=f"{backend}: refresh() after one change",
            )
            axis.plot(
                sizes,
                [catch_up[(backend, size)]["full_read_ms"] for size in sizes],
                marker="x",
                linestyle="--",
                label=f"{backend}: reading every row, for contrast",
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("declared settings")
        axis.set_ylabel("ms (log)")
        axis.set_title("Catch-up cost in one worker")
        axis.legend(fontsize=7)
        axis.grid(True, which="both", alpha=0.3)
        written.append(_save(figure, directory, "catch_up.png"))
    return written


def markdown(
    sections: Sequence[Section],
    images: Sequence[str],
    *,
    command: str,
    elapsed: float,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    image_prefix: str = "",
) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` in {elapsed:.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine().items()),
        "| load average (1, 5, 15 min) at start / end | "
        + " / ".join(", ".join(f"{value:.2f}" for value in sample) for sample in load)
        + " |",
        "",
        "### Targets",
        "",
        "| target (2 cores) | figure | verdict | why, when missed |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in verdicts(sections, max(load[0][0], load[1][0]))),
        "",
    ]
    for section in sections:
        lines += [f"### {section.title}", ""]
        if section.skipped:
            lines += [f"Skipped: {section.skipped}", ""]
            continue
        lines += section.lines
        lines += [f"- {note}" for note in section.notes]
        lines.append("")
    for image in images:
        lines += [f"![{image.removesuffix('.png')}]({image_prefix}{image})", ""]
    return "\n".join(lines)
