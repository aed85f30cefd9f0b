"""The pool's rules in-process, with fake workers: batches, the floor of accepting workers,
merged reload requests, failed reloads and their rollback, replacement of dead workers and its
backoff, of workers whose event loop falls silent and of those that ask to be recycled."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from quart_waffle.supervisor import pool as pool_module
from quart_waffle.supervisor.config import ServeConfig
from quart_waffle.supervisor.errors import ReloadFailed, WorkerFailed
from quart_waffle.supervisor.pool import Pool, backoff

pytestmark = pytest.mark.timeout(10)


class FakeWorker:
    """A worker that is ready (or fails) when its spawner says so, and exits when stopped."""

    def __init__(self, spawner: FakeSpawner, pid: int, generation: int, fails: bool) -> None:
        self.spawner = spawner
        self.pid = pid
        self.generation = generation
        self.fails = fails
        self.startup = spawner.startup
        self.age = 0.0
        self.accepting = False
        self.stopped = False
        self.killed = False
        self.silent = 0.0
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.recycle: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.restarts: asyncio.Queue[str | None] = asyncio.Queue()  # reasons; None: gone
        self.exited.add_done_callback(self._gone)

    def _gone(self, _exited: asyncio.Future[int]) -> None:
        if not self.recycle.done():
            self.recycle.set_result(False)
        self.restarts.put_nowait(None)

    def uptime(self) -> float:
        return self.age

    def silent_for(self) -> float:
        return self.silent

    async def wait_ready(self, startup_timeout: float) -> None:
        await asyncio.sleep(self.startup)
        if self.fails:
            self.exited.set_result(1)
            raise WorkerFailed(self.pid, "RuntimeError: broken", "Traceback ...\nRuntimeError")
        self.accepting = True
        self.spawner.sample()

    async def wait_recycle(self) -> bool:
        return await asyncio.shield(self.recycle)

    async def wait_restart(self) -> str | None:
        reason = await self.restarts.get()
        if reason is None:
            self.restarts.put_nowait(None)
        return reason

    async def wait_exit(self) -> int:
        return await asyncio.shield(self.exited)

    async def stop(self, graceful_timeout: float) -> int | None:
        self.stopped = True
        self.accepting = False
        self.spawner.sample()
        await asyncio.sleep(self.spawner.drain)
        if not self.exited.done():
            self.exited.set_result(0)
        return 0

    async def kill(self) -> None:
        self.killed = True
        self.accepting = False
        self.spawner.sample()
        if not self.exited.done():
            self.exited.set_result(-9)

    def crash(self) -> None:
        self.accepting = False
        self.spawner.sample()
        self.exited.set_result(-9)


class FakeSpawner:
    """Spawns fake workers, fails the ones asked to, and records the accepting count."""

    def __init__(self, startup: float = 0.005, drain: float = 0.005) -> None:
        self.startup = startup
        self.drain = drain
        self.pids = itertools.count(1000)
        self.workers: list[FakeWorker] = []
        self.failing_generations: set[int] = set()
        # generation: how many of its workers start before every further one fails
        self.healthy_starts: dict[int, int] = {}
        self.fail_next = 0
        self.first_startup: dict[int, float] = {}  # generation: its first worker's startup
        self.accepting_counts: list[int] = []
        self.concurrent_starts: list[int] = []
        self.live_counts: list[int] = []  # workers neither draining nor gone, at each spawn

    async def __call__(self, generation: int) -> FakeWorker:
        earlier = sum(w.generation == generation for w in self.workers)
        fails = (
            generation in self.failing_generations
            or earlier >= self.healthy_starts.get(generation, earlier + 1)
            or self.fail_next > 0
        )
        self.fail_next = max(self.fail_next - 1, 0)
        worker = FakeWorker(self, next(self.pids), generation, fails)
        if earlier == 0:
            worker.startup = self.first_startup.get(generation, self.startup)
        self.workers.append(worker)
        starting = [w for w in self.workers if not w.accepting and not w.exited.done()]
        self.concurrent_starts.append(len([w for w in starting if not w.stopped]))
        self.live_counts.append(
            len([w for w in self.workers if not w.stopped and not w.exited.done()])
        )
        return worker

    def sample(self) -> None:
        self.accepting_counts.append(sum(w.accepting for w in self.workers))

    def by_pid(self, pid: int) -> FakeWorker:
        return next(w for w in self.workers if w.pid == pid)


@pytest.fixture(name="spawner")
def _spawner() -> FakeSpawner:
    return FakeSpawner()


@pytest.fixture(name="delays")
def _delays() -> list[float]:
    """The backoff delays the pool asked to sleep (it does not actually wait)."""
    return []


async def running(config: ServeConfig, spawner: FakeSpawner, delays: list[float]) -> Pool:
    async def sleep(delay: float) -> None:
        delays.append(delay)

    pool = Pool(config, spawner, sleep=sleep)
    await pool.start()
    return pool


@contextlib.asynccontextmanager
async def maintained(
    spawner: FakeSpawner, delays: list[float], **options: Any
) -> AsyncIterator[Pool]:
    """A started pool of `ServeConfig(app="a:app", **options)`, maintained meanwhile."""
    pool = await running(ServeConfig(app="a:app", **options), spawner, delays)
    task = asyncio.create_task(pool.maintain())
    try:
        yield pool
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.stop()


@pytest.fixture(name="pool")
async def _pool(spawner: FakeSpawner, delays: list[float]) -> AsyncIterator[Pool]:
    pool = await running(ServeConfig(app="a:app", workers=4), spawner, delays)
    task = asyncio.create_task(pool.maintain())
    yield pool
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.stop()


async def test_a_reload_replaces_every_worker_and_never_thins_the_pool(
    pool: Pool, spawner: FakeSpawner
) -> None:
    before = pool.serving
    spawner.accepting_counts.clear()
    summary = await pool.reload(lambda _message: None)

    after = pool.serving
    assert len(after) == 4
    assert not set(after) & set(before)
    assert summary == f"reload 1 done: workers {after}"
    assert all(spawner.by_pid(pid).stopped for pid in before)
    assert all(spawner.by_pid(pid).generation == 1 for pid in after)
    # Each new worker is ready before an old one drains: 4 accepting at every moment.
    assert min(spawner.accepting_counts) >= 4


@pytest.mark.parametrize(
    ("min_active", "max_surge", "step"),
    [(None, 1, 1), (None, 2, 2), (3, 0, 1), (3, 1, 2), (2, 1, 3), (0, 0, 4), (0, 1, 4)],
)
async def test_min_active_and_max_surge_set_the_steps_the_floor_and_the_surge(
    spawner: FakeSpawner,
    delays: list[float],
    min_active: int | None,
    max_surge: int,
    step: int,
) -> None:
    messages: list[str] = []
    options = {"workers": 4, "min_active": min_active, "max_surge": max_surge}
    async with maintained(spawner, delays, **options) as pool:
        config = pool.config
        spawner.concurrent_starts.clear()
        spawner.accepting_counts.clear()
        spawner.live_counts.clear()
        await pool.reload(messages.append)
        assert len(pool.serving) == 4
        assert min(spawner.accepting_counts) >= config.active_floor
        # Each step drains as many old workers first as the floor allows, never more.
        assert min(spawner.accepting_counts) == max(4 - config.unavailable, 0)
        # Beyond the pool, at most the surge (a started worker is live until it drains).
        assert max(spawner.live_counts) <= 4 + max_surge

    assert max(spawner.concurrent_starts) == step
    assert any(message.startswith(f"starting {step} new worker(s)") for message in messages)
    header = f"{config.reload_step} at a time, at most {max_surge} extra, keeping"
    assert f"{header} {config.active_floor} serving" in messages[0]


async def test_a_failed_reload_leaves_the_old_workers_exactly(
    pool: Pool, spawner: FakeSpawner
) -> None:
    before = pool.serving
    spawner.failing_generations.add(1)
    messages: list[str] = []
    with pytest.raises(ReloadFailed, match=r"worker \d+ failed: RuntimeError: broken; 4 workers"):
        await pool.reload(messages.append)

    assert pool.serving == before
    assert not any(spawner.by_pid(pid).stopped for pid in before)
    assert "  Traceback ..." in messages  # the worker's details reach the requester
    spawner.failing_generations.clear()
    await pool.reload(lambda _message: None)
    assert not set(pool.serving) & set(before)


@pytest.mark.parametrize(("max_surge", "healthy"), [(1, 2), (2, 3)])
async def test_a_reload_failing_midway_returns_the_replaced_slots_to_the_old_generation(
    spawner: FakeSpawner, delays: list[float], max_surge: int, healthy: int
) -> None:
    messages: list[str] = []
    async with maintained(spawner, delays, workers=4, max_surge=max_surge) as pool:
        before = pool.serving
        spawner.healthy_starts[1] = healthy  # the next start of generation 1 fails
        spawner.accepting_counts.clear()
        with pytest.raises(
            ReloadFailed,
            match=rf"RuntimeError: broken; rolled back {healthy} replaced worker\(s\) to "
            rf"generation 0; 4 workers keep serving",
        ):
            await pool.reload(messages.append)
        assert [spawner.by_pid(pid).generation for pid in pool.serving] == [0] * 4
        # The old workers the reload had not reached yet serve on untouched.
        untouched = [pid for pid in before if not spawner.by_pid(pid).stopped]
        assert untouched == pool.serving[: 4 - healthy]
        # Every replacement, forward and back, was ready before the worker it replaced drained.
        assert min(spawner.accepting_counts) >= 4

    replaced = [w for w in spawner.workers if w.generation == 1 and not w.fails]
    assert len(replaced) == healthy
    assert all(w.stopped for w in replaced)
    assert f"rolling back {healthy} replaced worker(s) to generation 0" in messages


async def test_a_rollback_that_cannot_start_old_workers_says_which_stay_new(
    spawner: FakeSpawner, delays: list[float]
) -> None:
    async with maintained(spawner, delays, workers=4) as pool:
        spawner.healthy_starts.update({0: 4, 1: 2})  # no further worker of either one starts
        with pytest.raises(ReloadFailed, match="rollback incomplete") as error:
            await pool.reload(lambda _message: None)

        new = [w.pid for w in spawner.workers if w.generation == 1 and not w.fails]
        assert f"workers {new} still run generation 1" in str(error.value)
        # The new workers keep serving rather than leave a gap.
        assert [spawner.by_pid(pid).generation for pid in pool.serving] == [0, 0, 1, 1]


async def test_requests_made_during_a_reload_share_the_next_one(
    pool: Pool, spawner: FakeSpawner
) -> None:
    first = pool.request_reload()
    await asyncio.sleep(0)  # the first reload has started
    second, third = pool.request_reload(), pool.request_reload()
    summaries = await asyncio.gather(first, second, third)

    assert summaries[0].startswith("reload 1 done")
    assert summaries[1] == summaries[2]
    assert summaries[1].startswith("reload 2 done")
    assert len(spawner.workers) == 4 * 3  # the first pool and two reloads, not three


async def test_a_reload_that_grows_the_pool_starts_the_new_worker_at_the_new_generation(
    spawner: FakeSpawner, delays: list[float]
) -> None:
    """The supervisor's reload reads a config file raising `workers` (reconfigure), then
    requests the reload, in one step: the missing worker starts at the reload's generation,
    not at the old one only to be drained and replaced at once."""
    async with maintained(spawner, delays, workers=2) as pool:
        pool.reconfigure(ServeConfig(app="a:app", workers=3))
        summary = await pool.request_reload()

        assert summary.startswith("reload 1 done")
        assert [w.generation for w in spawner.workers].count(0) == 2
        assert len(spawner.workers) == 2 + 3
        assert len(pool.serving) == 3
        assert all(spawner.by_pid(pid).generation == 1 for pid in pool.serving)
        assert not any(w.stopped for w in spawner.workers if w.generation == 1)


async def test_a_failed_reload_that_grows_the_pool_leaves_it_on_the_old_generation(
    spawner: FakeSpawner, delays: list[float]
) -> None:
    """The reload fails while the worker started for it is still starting: the rollback
    misses that worker, so it is drained once ready and replaced at the old generation."""
    spawner.healthy_starts[1] = 1  # the missing worker starts, the reload's own fails
    spawner.first_startup[1] = 0.3  # and is ready only after the rollback
    async with maintained(spawner, delays, workers=2) as pool:
        pool.reconfigure(ServeConfig(app="a:app", workers=3))
        with pytest.raises(ReloadFailed):
            await pool.request_reload()
        await _until(
            lambda: (
                len(pool.serving) == 3
                and all(spawner.by_pid(pid).generation == 0 for pid in pool.serving)
            )
        )


async def test_a_dead_worker_is_replaced_at_once_when_it_was_stable(
    pool: Pool, spawner: FakeSpawner, delays: list[float]
) -> None:
    spawner.by_pid(pool.serving[0]).age = pool_module.STABLE_AFTER
    await _crash_and_wait(pool, spawner)
    assert delays == []
    assert len(spawner.workers) == 5


async def test_workers_dying_young_are_restarted_with_a_growing_backoff(
    pool: Pool, spawner: FakeSpawner, delays: list[float]
) -> None:
    for _ in range(3):
        await _crash_and_wait(pool, spawner)
    spawner.fail_next = 2  # then two replacements fail to start
    await _crash_and_wait(pool, spawner)

    assert delays == [backoff(1), backoff(2), backoff(3), backoff(4), backoff(5), backoff(6)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert backoff(20) == pool_module.BACKOFF_MAX


async def test_a_failed_first_start_raises(spawner: FakeSpawner, delays: list[float]) -> None:
    spawner.fail_next = 1
    with pytest.raises(WorkerFailed):
        await running(ServeConfig(app="a:app", workers=2), spawner, delays)


@pytest.mark.parametrize("silence", [0.04, 0])
async def test_a_worker_whose_loop_falls_silent_is_killed_and_replaced(
    spawner: FakeSpawner, delays: list[float], silence: float
) -> None:
    async with maintained(spawner, delays, workers=3, timeout=silence) as pool:
        hung = spawner.by_pid(pool.serving[0])
        hung.silent = 0.03  # within the timeout: left alone
        await asyncio.sleep(0.1)
        assert not hung.killed
        hung.silent = 1.0
        if silence:
            await _until(lambda: len(pool.serving) == 3 and hung.pid not in pool.serving)
            assert hung.killed
            assert not hung.stopped  # a blocked loop cannot drain: no drain is asked
            assert len(spawner.workers) == 4
            assert not any(w.killed for w in spawner.workers if w is not hung)
        else:
            await asyncio.sleep(0.1)  # 0 turns the check off
            assert not hung.killed
            assert hung.pid in pool.serving


@pytest.mark.parametrize(("min_active", "max_surge"), [(None, 1), (3, 0)])
async def test_workers_asking_to_be_recycled_are_replaced_one_at_a_time_by_the_reload_rules(
    spawner: FakeSpawner, delays: list[float], min_active: int | None, max_surge: int
) -> None:
    options = {"workers": 4, "min_active": min_active, "max_surge": max_surge}
    async with maintained(spawner, delays, **options) as pool:
        spawner.accepting_counts.clear()
        spawner.live_counts.clear()
        spawner.concurrent_starts.clear()
        tired = [spawner.by_pid(pid) for pid in pool.serving[:3]]
        for worker in tired:
            worker.recycle.set_result(True)  # served its max requests
        await _until(
            lambda: len(pool.serving) == 4 and not {w.pid for w in tired} & set(pool.serving)
        )
        assert all(worker.stopped for worker in tired)
        assert min(spawner.accepting_counts) >= pool.config.active_floor
        assert max(spawner.live_counts) <= 4 + max_surge
        assert max(spawner.concurrent_starts) == 1
        assert len(spawner.workers) == 4 + 3
        assert {spawner.by_pid(pid).generation for pid in pool.serving} == {0}


async def _crash_and_wait(pool: Pool, spawner: FakeSpawner) -> None:
    victim = spawner.by_pid(pool.serving[0])
    victim.crash()
    await _until(lambda: len(pool.serving) == 4 and victim.pid not in pool.serving)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll the pool's state for at most 5 s: it changes inside the pool's own tasks."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met within 5 s")
