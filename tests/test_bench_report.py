"""The benchmark report cannot flatter: every target gets a verdict row, MISSED whenever its
figure is missing, cut short or includes updates that never reached every worker; the load
note comes only from the load before the run; the published page is the generated report."""

from __future__ import annotations

from benchmarks.__main__ import DOCS, DOCS_INTRO
from benchmarks.common import BenchConfig, Section
from benchmarks.propagation import Cell
from benchmarks.reload import ReloadFigures
from benchmarks.reload_bench import Result
from benchmarks.report import load_note, markdown, verdicts
from harness.load import LoadReport, Sample

CONFIG = BenchConfig(settings=(1, 10_000), channels=("redis", "file", "postgres"), updates=4)
FAST = [0.002] * 4
SLOW = [0.030] * 4


def cell(channel: str, declared: int, latencies: list[float], **fields: object) -> Cell:
    made = Cell("quart-waffle", channel, declared, list(latencies), limit=5.0)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def reload_result(mode: str, reloads: int, requests: int) -> Result:
    samples = [Sample(0.0, 0.01, 1, True)] * requests
    name = "quart-waffle serve -w 4 + reload"
    return Result(name, mode, LoadReport(samples=samples), reloads, [(0.0, 1.0)], 10.0)


def sections() -> dict[str, Section]:
    propagation = Section("propagation")
    propagation.data["cells"] = [
        cell("redis", 7, [], skipped="failed: TimeoutError"),
        # redis at 10,000: no cell at all
        cell("file", 7, FAST),
        cell("file", 10_000, FAST[:2]),  # cut short
        cell("postgres", 7, FAST[:3], missed=1),  # one update never reached every worker
        cell("postgres", 10_000, SLOW),
    ]
    unpolled = Section("unpolled")
    unpolled.skip("failed: RuntimeError: boom")
    throughput = Section("throughput")
    throughput.skip("failed: OSError")
    reload = Section("reload")
    figures = ReloadFigures(requests=100, reloads=3)
    figures.results.append(reload_result("new connection per request", 1, 100))
    figures.failed["quart-waffle serve -w 4 + reload, keep-alive"] = "RuntimeError: no start"
    reload.data["reload"] = figures
    return {
        "propagation": propagation,
        "unpolled": unpolled,
        "throughput": throughput,
        "reload": reload,
    }


def test_every_target_has_a_verdict_row() -> None:
    rows = {row[0]: row[1:] for row in verdicts(sections(), CONFIG)}
    expected_missed = {
        "redis p90 < 5 ms at 7 settings, polled": "the cell did not run: failed: TimeoutError",
        "redis p90 < 10 ms at 10,000 settings, polled": "no figure for it",
        "file p90 < 150 ms at 10,000 settings, polled": "cut short: 2 of 4 updates",
        "postgres p90 < 5 ms at 7 settings, polled": "1 of 4 updates never reached every worker",
        "postgres p90 < 10 ms at 10,000 settings, polled": "",
        "redis p90 < 5 ms at 7 settings, unpolled": "boom",
        "file p90 < 150 ms at 7 settings, unpolled": "boom",
        "postgres p90 < 5 ms at 7 settings, unpolled": "boom",
        "throughput, quart-waffle (redis), >= 97% of bare Quart": "OSError",
        "throughput, quart-waffle (file), >= 97% of bare Quart": "OSError",
        "zero failed requests during reloads (quart-waffle serve, new connection per request)": (
            "cut short: 1 of 3 reloads"
        ),
        "worst latency during reloads < 250 ms (quart-waffle serve, new connection per request)": (
            "cut short: 1 of 3 reloads"
        ),
        "zero failed requests during reloads (quart-waffle serve, keep-alive)": "no start",
        "worst latency during reloads < 250 ms (quart-waffle serve, keep-alive)": "no start",
    }
    assert set(rows) == {*expected_missed, "file p90 < 150 ms at 7 settings, polled"}
    assert rows["file p90 < 150 ms at 7 settings, polled"][1] == "met"
    for target, why in expected_missed.items():
        _figure, verdict, reason = rows[target]
        assert verdict == "MISSED", target
        assert why in reason, (target, reason)


def test_the_load_note_comes_from_the_load_before_the_run() -> None:
    assert load_note(0.1) is None
    assert "before the first benchmark" in (load_note(1_000.0) or "")
    quiet = markdown(
        sections(), [], config=CONFIG, command="c", elapsed=1.0, load_at_start=(0.1, 0, 0)
    )
    busy = markdown(
        sections(), [], config=CONFIG, command="c", elapsed=1.0, load_at_start=(1e3, 0, 0)
    )
    assert "busy" not in quiet
    assert busy.count("busy") == 1  # one note, in the header, never as a verdict's reason


def test_the_published_page_is_a_generated_report() -> None:
    page = DOCS.read_text()
    assert page.startswith(DOCS_INTRO)
    assert "### Targets" in page[len(DOCS_INTRO) :]
