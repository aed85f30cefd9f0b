"""The benchmark report cannot flatter: every target gets a verdict row, MISSED whenever its
figure is missing, cut short or includes updates that never reached every worker; the load
note comes only from the load before the run; the published page is the generated report."""

from __future__ import annotations

from benchmarks.__main__ import DOCS, DOCS_INTRO
from benchmarks.common import BenchConfig, Section
from benchmarks.flask_waffleconf import Versus
from benchmarks.fleet import HEADER as FLEET_HEADER
from benchmarks.fleet import Row
from benchmarks.propagation import Cell
from benchmarks.reload import ReloadFigures
from benchmarks.reload_bench import Result
from benchmarks.report import fleet_verdicts, load_note, markdown, verdicts, versus_verdicts
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
        "redis p90 < 2 ms at 7 settings, unpolled": "boom",
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


def fleet_row(store: str, workers: int, mode: str, p90: float, **fields: object) -> Row:
    row = Row(store, workers, mode, 20.0, p90 / 2, p90, p90 * 1.2, "20/20", 0.1, None, None, 0.5)
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def fleet_section(*rows: Row) -> dict[str, Section]:
    section = Section("fleet")
    section.data["fleet"] = list(rows)
    section.lines += [FLEET_HEADER, *(row.line() for row in rows)]
    return {"fleet": section}


def test_fleet_targets_are_met_only_with_every_update_applied_within_bounds() -> None:
    met = fleet_verdicts(
        fleet_section(
            fleet_row("sqlite", 256, "carried", 24.0),
            fleet_row("sqlite", 256, "hint", 150.0),
            fleet_row("postgres", 160, "carried", 20.0, transactions=1.9, idle=0),
        )
    )
    assert [row[2] for row in met] == ["met", "met", "met"]
    assert "0.1 path in this run: 150.0 ms" in met[0][1]
    slow = fleet_verdicts(
        fleet_section(
            fleet_row("sqlite", 256, "carried", 45.0, load=7.5),
            fleet_row("postgres", 160, "carried", 20.0, transactions=12.0, idle=41),
        )
    )
    assert [row[2] for row in slow] == ["MISSED"] * 3
    assert "load average 7.50" in slow[0][3]
    lost = fleet_verdicts(
        fleet_section(
            fleet_row("sqlite", 256, "carried", 10.0, complete="19/20"),
            fleet_row("postgres", 160, "carried", 20.0, transactions=1.0, idle=0, complete="9/10"),
        )
    )
    assert [row[2] for row in lost] == ["MISSED"] * 3
    assert all("applied" in row[3] for row in lost)
    absent = fleet_verdicts(fleet_section(fleet_row("sqlite", 128, "carried", 5.0)))
    assert [row[1:3] for row in absent] == [["-", "MISSED"]] * 3
    skipped = Section("fleet")
    skipped.skip("Redis is not reachable")
    assert all("not reachable" in row[3] for row in fleet_verdicts({"fleet": skipped}))
    page = markdown(
        fleet_section(fleet_row("sqlite", 256, "carried", 24.0)),
        [],
        config=CONFIG,
        command="c",
        elapsed=1.0,
        load_at_start=(0.1, 0, 0),
    )
    assert "| sqlite | 256 | carried |" in page
    assert "fleet: 256 workers, SQLite, Redis, p90 to all < 30 ms | 24.0 ms | met" in page


def versus_section(ours: list[float], peer: list[float], **fields: object) -> dict[str, Section]:
    section = Section("fwc")
    result = Versus(
        cell("redis", 7, ours), cell("redis", 7, peer), cell("redis", 7, SLOW), [0.5, 3.0]
    )
    for name, value in fields.items():
        setattr(result.ours, name, value)
    section.data["versus"] = result
    return {"fwc": section}


def test_polled_against_the_peer_is_met_only_below_its_p90_in_the_same_run() -> None:
    [[target, figure, verdict, why]] = versus_verdicts(versus_section(FAST, SLOW))
    assert "Flask-WaffleConf" in target
    assert verdict == "met"
    assert figure.startswith("x0.07")
    # a tenth slower than the peer is slower
    [[_, figure, verdict, why]] = versus_verdicts(versus_section([0.0055] * 4, [0.005] * 4))
    assert verdict == "MISSED"
    assert "0.50, 3.00" in why
    [[_, _, verdict, why]] = versus_verdicts(versus_section(FAST, SLOW, missed=2))
    assert verdict == "MISSED"
    assert "2 of ours not converged" in why
    [[_, figure, verdict, why]] = versus_verdicts(versus_section([], SLOW))
    assert (figure, verdict) == ("-", "MISSED")
    skipped = Section("fwc")
    skipped.skip("no virtualenv")
    [[_, _, verdict, why]] = versus_verdicts({"fwc": skipped})
    assert verdict == "MISSED"
    assert "no virtualenv" in why
