"""The supervisor's metrics file, and the settings metrics of workers under a real
``quart-waffle serve``: its private multiprocess directory, a killed worker forgotten, a
reload counted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quart_waffle.supervisor.errors import ReloadFailed
from quart_waffle.supervisor.metrics import SupervisorMetrics, multiprocess_directory
from tests.conftest import require
from tests.supervisor_apps.harness import ServerProcess
from tests.test_metrics_workers import Samples, parse, per_pid, scrape, worker_env
from tests.test_supervisor_pool import FakeSpawner, maintained


def metrics_text(directory: Path) -> str:
    return (directory / "supervisor.prom").read_text()


def read_file(path: Path) -> Samples:
    return parse(path.read_text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def until(check: Callable[[], bool], message: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {message}")
        await asyncio.sleep(0.1)


def test_the_file_is_prometheus_text(tmp_path: Path) -> None:
    census = {"serving": 3, "starting": 1}
    metrics = SupervisorMetrics(str(tmp_path / "supervisor.prom"), lambda: census, lambda: 4)
    metrics.reload_started()
    assert "quart_waffle_supervisor_reload_in_progress 1" in metrics.render()
    metrics.reload_finished(True)
    metrics.reload_started()
    metrics.reload_finished(False)
    metrics.respawned(2)
    metrics.write()
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(tmp_path))}
    assert families["quart_waffle_supervisor_reloads"].type == "counter"
    assert families["quart_waffle_supervisor_reload_duration_seconds"].type == "histogram"
    samples = read_file(tmp_path / "supervisor.prom")
    assert value(samples, "quart_waffle_supervisor_reloads_total", outcome="succeeded") == 1
    assert value(samples, "quart_waffle_supervisor_reloads_total", outcome="failed") == 1
    assert value(samples, "quart_waffle_supervisor_reload_duration_seconds_count") == 2
    assert value(samples, "quart_waffle_supervisor_reload_duration_seconds_bucket", le="1") == 2
    assert value(samples, "quart_waffle_supervisor_reload_in_progress") == 0
    assert value(samples, "quart_waffle_supervisor_respawns_total") == 2
    assert value(samples, "quart_waffle_supervisor_workers", state="serving") == 3
    assert value(samples, "quart_waffle_supervisor_workers", state="draining") == 0
    assert value(samples, "quart_waffle_supervisor_generation") == 4
    assert [p.name for p in tmp_path.iterdir()] == ["supervisor.prom"]  # no temporary left


async def test_the_pool_tells_reloads_their_outcome_and_respawns(tmp_path: Path) -> None:
    spawner, delays = FakeSpawner(), list[float]()
    async with maintained(spawner, delays, workers=2) as pool:
        metrics = SupervisorMetrics(str(tmp_path / "supervisor.prom"), pool.census, lambda: 0)
        pool.observer = metrics
        await pool.reload(lambda _message: None)
        spawner.failing_generations.add(2)
        with pytest.raises(ReloadFailed):
            await pool.reload(lambda _message: None)
        victim = spawner.by_pid(pool.serving[0])
        victim.crash()
        await until(lambda: len(pool.serving) == 2 and victim.pid not in pool.serving, "respawn")
        metrics.write()
    samples = read_file(tmp_path / "supervisor.prom")
    assert value(samples, "quart_waffle_supervisor_reloads_total", outcome="succeeded") == 1
    assert value(samples, "quart_waffle_supervisor_reloads_total", outcome="failed") == 1
    assert value(samples, "quart_waffle_supervisor_reload_duration_seconds_count") == 2
    assert value(samples, "quart_waffle_supervisor_respawns_total") == 1
    assert value(samples, "quart_waffle_supervisor_workers", state="serving") == 2
    assert value(samples, "quart_waffle_supervisor_workers", state="starting") == 0


def test_the_private_directory_is_made_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with multiprocess_directory() as directory:
        assert directory is not None
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory
        assert os.stat(directory).st_mode & 0o077 == 0
    assert not os.path.exists(directory)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


@pytest.fixture(name="server")
def _server(tmp_path: Path) -> Iterator[ServerProcess]:
    require("Redis")
    args = ["-w", "2", "--metrics-file", str(tmp_path / "supervisor.prom")]
    server = ServerProcess(tmp_path, "examples.app:app", args, worker_env(tmp_path, None))
    yield server
    server.close()


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _live_gauges(directory: str, pid: int) -> list[Path]:
    return list(Path(directory).glob(f"gauge_live*_{pid}.db"))


def _private_directory(pid: int) -> str:
    """The supervisor's private multiprocess directory that holds the gauges of ``pid`` (a
    worker's /proc/<pid>/environ is overwritten by its process title)."""
    found = list(Path(tempfile.gettempdir()).glob(f"quart-waffle-metrics-*/gauge_liveall_{pid}.db"))
    assert len(found) == 1, found
    return str(found[0].parent)


@pytest.mark.timeout(120)
async def test_serve_counts_a_respawn_and_a_reload(server: ServerProcess, tmp_path: Path) -> None:
    port, metrics_file = server.port, tmp_path / "supervisor.prom"

    async def workers() -> dict[int, float]:
        status, body = await scrape(port)
        assert status == 200, body
        return per_pid(parse(body), "quart_waffle_revision")

    async def settle(count: int, without: frozenset[int] = frozenset()) -> dict[int, float]:
        deadline = time.monotonic() + 30
        while True:
            seen = await workers()
            if len(seen) == count and not seen.keys() & without:
                return seen
            if time.monotonic() > deadline:
                pytest.fail(f"workers in the metrics: {seen}\n{server.log()[-3000:]}")
            await asyncio.sleep(0.1)

    first = await settle(2)
    victim, survivor = sorted(first)
    directory = _private_directory(victim)
    assert os.stat(directory).st_mode & 0o077 == 0  # private
    assert _exists(directory)

    os.kill(victim, signal.SIGKILL)
    respawned = await settle(2, without=frozenset({victim}))  # forgotten, and replaced
    assert survivor in respawned
    assert not _live_gauges(directory, victim)
    await until(
        lambda: (
            metrics_file.exists()
            and value(read_file(metrics_file), "quart_waffle_supervisor_respawns_total") == 1
        ),
        "the respawn counted in the metrics file",
    )

    reloaded = await server.reload()
    assert reloaded.returncode == 0, reloaded.output
    await until(
        lambda: (
            value(
                read_file(metrics_file),
                "quart_waffle_supervisor_reloads_total",
                outcome="succeeded",
            )
            == 1
        ),
        "the reload counted in the metrics file",
    )
    samples = read_file(metrics_file)
    assert value(samples, "quart_waffle_supervisor_reloads_total", outcome="failed") == 0
    assert value(samples, "quart_waffle_supervisor_reload_duration_seconds_count") == 1
    assert value(samples, "quart_waffle_supervisor_reload_duration_seconds_sum") > 0
    assert value(samples, "quart_waffle_supervisor_generation") == 1
    await until(
        lambda: (
            value(read_file(metrics_file), "quart_waffle_supervisor_workers", state="serving") == 2
            and value(read_file(metrics_file), "quart_waffle_supervisor_workers", state="draining")
            == 0
        ),
        "two workers serving, none draining",
    )
    after = await settle(2, without=frozenset(respawned))  # drained workers remove their own
    assert not after.keys() & respawned.keys()

    assert server.stop() == 0
    assert not _exists(directory)  # the private directory goes with the supervisor
    with contextlib.suppress(FileNotFoundError):
        final = read_file(metrics_file)
        assert value(final, "quart_waffle_supervisor_workers", state="serving") == 0
