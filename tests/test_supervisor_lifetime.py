"""`--max-worker-lifetime`: a worker that has served its lifetime (plus a jitter drawn per
worker) is replaced by a rolling replacement, by the reload rules; in-process with fake
workers, then on real processes under load with no request failed."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest

from harness.load import LoadReport, run_load
from tests.supervisor_apps.harness import ServerProcess
from tests.test_supervisor_pool import FakeSpawner, _until, maintained

APP = "tests.supervisor_apps.testapp:app"
AGED = r"Worker (\d+) reached its max lifetime \(([\d.]+) s\); replacing it"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("min_active", "max_surge"), [(None, 1), (3, 0), (2, 2)])
async def test_aged_workers_are_replaced_one_at_a_time_by_the_reload_rules(
    min_active: int | None, max_surge: int
) -> None:
    spawner = FakeSpawner()
    options = {"workers": 4, "min_active": min_active, "max_surge": max_surge}
    async with maintained(spawner, [], max_worker_lifetime=0.3, **options) as pool:
        first = [spawner.by_pid(pid) for pid in pool.serving]
        spawner.accepting_counts.clear()
        spawner.live_counts.clear()
        spawner.concurrent_starts.clear()
        await _until(lambda: all(worker.stopped for worker in first) and len(pool.serving) == 4)
        assert min(spawner.accepting_counts) >= pool.config.active_floor
        assert max(spawner.live_counts) <= 4 + max_surge
        # one worker at a time, each by the reload's rules
        assert max(spawner.concurrent_starts) == 1
        assert {spawner.by_pid(pid).generation for pid in pool.serving} == {0}


@pytest.mark.timeout(10)
async def test_each_worker_draws_its_own_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[float, float]] = []
    extra = iter([0.6, 0.0, 0.9, 0.3])

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return next(extra, 5.0)

    monkeypatch.setattr(random, "uniform", uniform)  # the pool draws from random
    spawner = FakeSpawner()
    options = {"max_worker_lifetime": 0.2, "max_worker_lifetime_jitter": 1.0}
    async with maintained(spawner, [], workers=4, **options) as pool:
        first = list(pool.serving)  # in the order they drew
        stopped: list[int] = []
        for _ in range(5000):
            stopped += [p for p in first if spawner.by_pid(p).stopped and p not in stopped]
            if len(stopped) == 4:
                break
            await asyncio.sleep(0.001)
        assert drawn[:4] == [(0, 1.0)] * 4
        # replaced in the order of their lifetimes: 0.2 + 0.6, 0.2, 0.2 + 0.9, 0.2 + 0.3 s
        assert stopped == [first[i] for i in (1, 3, 0, 2)]


@pytest.mark.timeout(10)
async def test_no_lifetime_means_workers_stay() -> None:
    spawner = FakeSpawner()
    async with maintained(spawner, [], workers=2) as pool:
        first = list(pool.serving)
        await asyncio.sleep(0.3)
        assert pool.serving == first
        assert len(spawner.workers) == 2


@pytest.mark.timeout(10)
async def test_a_worker_aged_during_a_reload_is_replaced_once() -> None:
    spawner = FakeSpawner(startup=0.05)
    async with maintained(spawner, [], workers=2, max_worker_lifetime=0.08) as pool:
        await pool.reload(lambda _message: None)
        # every worker of the reload ages in turn; none is replaced twice
        await _until(lambda: len([w for w in spawner.workers if w.stopped]) >= 6)
        stops = [w.pid for w in spawner.workers if w.stopped]
        assert len(stops) == len(set(stops))


@pytest.mark.timeout(120)
async def test_aged_workers_are_replaced_under_load_with_no_failure(tmp_path: Path) -> None:
    args = ["-w", "2", "--max-worker-lifetime", "3", "--max-worker-lifetime-jitter", "1"]
    server = ServerProcess(tmp_path, APP, [*args, "--keep-alive-timeout", "1"], {})
    stop = asyncio.Event()
    load: asyncio.Task[LoadReport] | None = None
    try:
        first = server.started_pids()
        load = asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=4, keep_alive=True, stop=stop)
        )
        # Three replacements: both first workers, then one of their replacements.
        await asyncio.to_thread(server.wait_for_log, f"(?s){AGED}.*{AGED}.*{AGED}", 90)
        stop.set()
        report = await load

        assert report.failures == [], report.failures[:3]
        aged = re.findall(AGED, server.log())
        assert first <= {int(pid) for pid, _ in aged}
        assert all(3.0 <= float(seconds) <= 4.0 for _, seconds in aged)
        assert len(report.samples) > 100
    finally:
        stop.set()
        if load is not None:
            await asyncio.gather(load, return_exceptions=True)
        server.close()
