"""The Markdown report, the target verdicts and the PNG plots."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .common import BenchConfig, Section, summary_ms
from .flask_waffleconf import Versus
from .fleet import Row
from .propagation import BASE_SETTINGS, Cell
from .reload import ReloadFigures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FAST_BOUND = 5.0
LARGE = 10_000
LARGE_BOUND = 10.0
FILE_BOUND = 150.0
UNPOLLED_BOUND = 2.0  # redis, each worker's own clock, nobody polling
FLEET_P90_MS = 30.0
FLEET_IDLE = 40
FLEET_XACTS = 10
THROUGHPUT_RATIO = 0.97
THROUGHPUT_VARIANTS = ("quart-waffle (redis)", "quart-waffle (file)")
RELOAD_WORST_MS = 250


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


def _cells(sections: Iterable[Section]) -> list[Cell]:
    cells: list[Cell] = []
    for section in sections:
        cells.extend(section.data.get("cells", []))
    return cells


def _not_run(sections: Mapping[str, Section], name: str) -> str:
    """Why section ``name`` gave no figures."""
    section = sections[name]
    if section.skipped:
        return f"the {name} section did not run: {section.skipped}"
    return f"no figure for it in the {name} section"


def _cell_verdict(cell: Cell | None, bound: float, asked: int, absent: str) -> tuple[str, str, str]:
    """(figure, verdict, why) of a propagation target: MISSED unless the cell ran every update
    asked, every update reached every worker, and its p90 is under ``bound`` ms."""
    if cell is None:
        return "-", "MISSED", absent
    if cell.skipped is not None:
        return "-", "MISSED", f"the cell did not run: {cell.skipped}"
    if cell.missed:
        why = f"{cell.missed} of {cell.attempts} updates never reached every worker"
        return "-", "MISSED", f"{why} within {cell.limit:g} s"
    if cell.attempts < asked or not cell.latencies:
        return "-", "MISSED", f"cut short: {cell.attempts} of {asked} updates"
    p90 = summary_ms(cell.latencies)["p90"]
    figure = f"{p90:.1f} ms ({cell.attempts} updates)"
    return figure, "met" if p90 < bound else "MISSED", ""


def _propagation_targets(config: BenchConfig) -> list[tuple[str, int, float]]:
    """(channel, declared settings, p90 bound in ms) of every propagation target."""
    smallest = max(min(config.settings), BASE_SETTINGS)
    targets: list[tuple[str, int, float]] = []
    for channel in config.channels:
        if channel == "file":
            sizes = sorted({max(size, BASE_SETTINGS) for size in config.settings})
            targets += [(channel, size, FILE_BOUND) for size in sizes]
        else:
            targets.append((channel, smallest, FAST_BOUND))
            if LARGE in config.settings:
                targets.append((channel, LARGE, LARGE_BOUND))
    return targets


def propagation_verdicts(sections: Mapping[str, Section], config: BenchConfig) -> list[list[str]]:
    """A row per propagation target, polled and unpolled, from the sections that ran."""
    rows: list[list[str]] = []
    polled = {
        (cell.channel, cell.declared): cell
        for cell in _cells(sections.values())
        if cell.system == "quart-waffle"
    }
    unpolled = {
        cell.channel: cell
        for cell in sections.get("unpolled", Section("")).data.get("unpolled", [])
    }
    floor = sections.get("propagation", Section("")).data.get("floor", {})
    if "propagation" in sections:
        absent = _not_run(sections, "propagation")
        for channel, declared, bound in _propagation_targets(config):
            cell = polled.get((channel, declared))
            figure, verdict, why = _cell_verdict(cell, bound, config.updates, absent)
            if verdict == "MISSED" and figure != "-":
                why = "; ".join(_measured_context(sections, channel, declared, unpolled, floor))
            target = f"{channel} p90 < {bound:.0f} ms at {declared:,} settings, polled"
            rows.append([target, figure, verdict, why])
    if "unpolled" in sections:
        absent = _not_run(sections, "unpolled")
        for channel in config.channels:
            bound = {"file": FILE_BOUND, "redis": UNPOLLED_BOUND}.get(channel, FAST_BOUND)
            figure, verdict, why = _cell_verdict(
                unpolled.get(channel), bound, config.updates, absent
            )
            target = f"{channel} p90 < {bound:.0f} ms at {BASE_SETTINGS} settings, unpolled"
            rows.append([target, figure, verdict, why])
    return rows


def _measured_context(
    sections: Mapping[str, Section],
    channel: str,
    declared: int,
    unpolled: Mapping[str, Cell],
    floor: Mapping[str, float],
) -> list[str]:
    """Figures of this run that bear on a missed propagation target (never a guess)."""
    context: list[str] = []
    other = unpolled.get(channel)
    if other is not None and other.latencies:
        p90 = summary_ms(other.latencies)["p90"]
        context.append(f"unpolled in this run: p90 {p90:.1f} ms")
    if channel in floor:
        context.append(f"one process, no HTTP, in this run: p90 {floor[channel]:.1f} ms")
    catch_up = sections.get("core", Section("")).data.get("catch_up", {})
    store = "postgresql" if channel == "postgres" else "sqlite"
    small, large = catch_up.get((store, 10)), catch_up.get((store, LARGE))
    if declared >= LARGE and small and large:
        context.append(
            f"one worker's refresh() after one change: {large['refresh_ms_p50']:.1f} ms at"
            f" {LARGE:,} settings, {small['refresh_ms_p50']:.1f} ms at 10 (core section)"
        )
    return context


def throughput_verdicts(sections: Mapping[str, Section]) -> list[list[str]]:
    if "throughput" not in sections:
        return []
    data = sections["throughput"].data
    ratios: dict[str, float] = data.get("throughput_ratio", {})
    errors: dict[str, int] = data.get("throughput_errors", {})
    bare_rates: list[float] = data.get("throughput", {}).get("bare Quart", [])
    rows: list[list[str]] = []
    for name in THROUGHPUT_VARIANTS:
        target = f"throughput, {name}, >= {THROUGHPUT_RATIO:.0%} of bare Quart"
        if name not in ratios or not bare_rates:
            rows.append([target, "-", "MISSED", _not_run(sections, "throughput")])
            continue
        ratio, failed = ratios[name], errors.get(name, 0)
        why: list[str] = []
        if failed:
            why.append(f"{failed:,} requests failed")
        if ratio < THROUGHPUT_RATIO:
            bare = sum(bare_rates) / len(bare_rates)
            spread = (max(bare_rates) - min(bare_rates)) / bare
            why.append(f"bare Quart's own rounds spread {spread:.0%} in this run")
        verdict = "met" if not why else "MISSED"
        rows.append([target, f"{ratio:.1%}", verdict, "; ".join(why)])
    return rows


def reload_verdicts(sections: Mapping[str, Section]) -> list[list[str]]:
    """Zero failed requests and worst latency, per connection mode, for quart-waffle serve:
    MISSED also when a cell failed, did fewer reloads than asked or fewer requests."""
    if "reload" not in sections:
        return []
    figures: ReloadFigures | None = sections["reload"].data.get("reload")
    rows: list[list[str]] = []
    for mode in ("new connection per request", "keep-alive"):
        targets = [
            f"zero failed requests during reloads (quart-waffle serve, {mode})",
            f"worst latency during reloads < {RELOAD_WORST_MS} ms (quart-waffle serve, {mode})",
        ]
        result = None
        if figures is not None:
            result = next(
                (r for r in figures.results if r.mode == mode and r.server.startswith("quart")),
                None,
            )
        if figures is None or result is None:
            cells = figures.failed.items() if figures is not None else []
            broken = [why for cell, why in cells if cell.startswith("quart") and mode in cell]
            why = f"the cell failed: {broken[0]}" if broken else _not_run(sections, "reload")
            rows += [[target, "-", "MISSED", why] for target in targets]
            continue
        short: list[str] = []
        if result.reloads < figures.reloads:
            short.append(f"{result.reloads} of {figures.reloads} reloads")
        if result.report.requests < figures.requests:
            short.append(f"{result.report.requests:,} of {figures.requests:,} requests")
        cut = f"cut short: {', '.join(short)}" if short else ""
        failures = len(result.report.failures)
        done = f"{result.reloads} reloads, {result.report.requests:,} requests"
        rows.append(
            [
                targets[0],
                f"{failures:,} failed ({done})",
                "met" if not failures and not cut else "MISSED",
                cut,
            ]
        )
        worst = result.worst_during_reloads() * 1000
        rows.append(
            [
                targets[1],
                f"{worst:,.0f} ms",
                "met" if worst < RELOAD_WORST_MS and not cut else "MISSED",
                cut,
            ]
        )
    return rows


def _fleet_row(rows: Sequence[Row], store: str, workers: int, mode: str) -> Row | None:
    return next((r for r in rows if (r.store, r.workers, r.mode) == (store, workers, mode)), None)


def fleet_verdicts(sections: Mapping[str, Section]) -> list[list[str]]:
    """The fleet targets: 256 workers on SQLite converge with a p90 under
    :data:`FLEET_P90_MS`; 160 workers on PostgreSQL all converge holding at most
    :data:`FLEET_IDLE` idle connections and costing at most :data:`FLEET_XACTS`
    transactions per change. MISSED when the row is absent or an update never
    reached every worker; the 0.1 path of the same run and the load are quoted."""
    if "fleet" not in sections:
        return []
    rows: list[Row] = sections["fleet"].data.get("fleet", [])
    absent = _not_run(sections, "fleet")
    verdict_rows: list[list[str]] = []
    sqlite_target = f"fleet: 256 workers, SQLite, Redis, p90 to all < {FLEET_P90_MS:.0f} ms"
    pg_targets = [
        f"fleet: 160 workers, PostgreSQL, Redis, <= {FLEET_IDLE} idle DB connections",
        f"fleet: 160 workers, PostgreSQL, Redis, <= {FLEET_XACTS} DB transactions per change",
    ]
    carried = _fleet_row(rows, "sqlite", 256, "carried")
    if carried is None:
        verdict_rows.append([sqlite_target, "-", "MISSED", absent])
    else:
        why = [] if carried.every_update_applied else [f"applied {carried.complete}"]
        if carried.p90 >= FLEET_P90_MS:
            why.append(f"load average {carried.load:.2f} on {os.cpu_count()} cores")
        hint = _fleet_row(rows, "sqlite", 256, "hint")
        versus = f"; 0.1 path in this run: {hint.p90:.1f} ms" if hint is not None else ""
        figure = f"{carried.p90:.1f} ms{versus}"
        verdict_rows.append([sqlite_target, figure, "MISSED" if why else "met", "; ".join(why)])
    pg = _fleet_row(rows, "postgres", 160, "carried")
    if pg is None:
        verdict_rows += [[target, "-", "MISSED", absent] for target in pg_targets]
        return verdict_rows
    short = [] if pg.every_update_applied else [f"applied {pg.complete}"]
    measured: tuple[tuple[str, float | None, int], ...] = (
        (pg_targets[0], pg.idle, FLEET_IDLE),
        (pg_targets[1], pg.transactions, FLEET_XACTS),
    )
    for target, amount, bound in measured:
        if amount is None:
            verdict_rows.append([target, "-", "MISSED", "not measured"])
            continue
        verdict = "met" if amount <= bound and not short else "MISSED"
        verdict_rows.append([target, f"{amount:g}", verdict, "; ".join(short)])
    return verdict_rows


def versus_verdicts(sections: Mapping[str, Section]) -> list[list[str]]:
    """Polled over HTTP on Redis, ours p90 below Flask-WaffleConf's in the same run."""
    if "fwc" not in sections:
        return []
    target = "redis, polled, 7 settings: p90 below Flask-WaffleConf 0.3.1's, same run"
    result: Versus | None = sections["fwc"].data.get("versus")
    if result is None:
        return [[target, "-", "MISSED", _not_run(sections, "fwc")]]
    ratio = result.ratio("p90")
    if ratio is None:
        return [[target, "-", "MISSED", "a side has no figures"]]
    ours = summary_ms(result.ours.latencies)["p90"]
    peer = summary_ms(result.peer.latencies)["p90"]
    figure = f"x{ratio:.2f} ({ours:.1f} ms against {peer:.1f} ms)"
    why = [f"{cell.missed} of ours not converged" for cell in [result.ours] if cell.missed]
    if ratio >= 1:
        load = ", ".join(f"{value:.2f}" for value in result.load)
        why.append(f"load average before each round: {load}")
    return [[target, figure, "MISSED" if why else "met", "; ".join(why)]]


def verdicts(sections: Mapping[str, Section], config: BenchConfig) -> list[list[str]]:
    """One row per target of the sections run: target, figure, verdict, and why when missed.
    A target whose figure is missing (section or cell failed, cut short) is MISSED."""
    return [
        *propagation_verdicts(sections, config),
        *versus_verdicts(sections),
        *throughput_verdicts(sections),
        *reload_verdicts(sections),
        *fleet_verdicts(sections),
    ]


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


def load_note(load_at_start: float) -> str | None:
    """A sentence about the machine's load when the run started, measured before the first
    benchmark (os.getloadavg()), when it exceeded the cores; else None."""
    cores = os.cpu_count() or 1
    if load_at_start <= cores:
        return None
    return (
        f"The machine was already busy when this run started: 1-minute load average"
        f" {load_at_start:.2f} on {cores} cores, measured before the first benchmark."
    )


def markdown(
    sections: Mapping[str, Section],
    images: Sequence[str],
    *,
    config: BenchConfig,
    command: str,
    elapsed: float,
    load_at_start: tuple[float, float, float],
    image_prefix: str = "",
) -> str:
    """The report: where and how it was measured, a verdict row per target, every section."""
    note = load_note(load_at_start[0])
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` in {elapsed:.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine().items()),
        "| load average (1, 5, 15 min) before the run | "
        + ", ".join(f"{value:.2f}" for value in load_at_start)
        + " |",
        "",
        *([note, ""] if note else []),
        "### Targets",
        "",
        "| target (2 cores) | figure | verdict | why, when missed |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in verdicts(sections, config)),
        "",
    ]
    for section in sections.values():
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
