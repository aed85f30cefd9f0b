"""The pool: keeps N workers serving, replaces dead ones with a backoff, rolls reloads through
it a batch at a time. It starts workers through an injected spawner and knows nothing of
processes or sockets, so its rules can be tested in-process with fake workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from ..redaction import describe_error
from .config import ServeConfig
from .errors import ReloadFailed, WorkerFailed
from .metrics import PoolObserver

Progress = Callable[[str], None]
"""Told each step of a reload, one line at a time."""
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger("quart_waffle.supervisor")

# A worker that dies sooner than this after starting counts towards the restart backoff.
STABLE_AFTER = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class Worker(Protocol):
    """What the pool needs of a worker (`WorkerProcess` is the real one)."""

    @property
    def pid(self) -> int: ...

    @property
    def generation(self) -> int: ...

    def uptime(self) -> float:
        """Seconds since the worker was started."""

    def silent_for(self) -> float:
        """Seconds since the worker's event loop last sent a heartbeat (or its ``ready``)."""

    async def wait_ready(self, startup_timeout: float) -> None:
        """Return once the worker accepts; otherwise stop it and raise `WorkerFailed`."""

    async def wait_exit(self) -> int:
        """The worker's exit code, once it has exited."""

    async def stop(self, graceful_timeout: float) -> int | None:
        """Drain the worker; its exit code, or None when it had to be killed."""

    async def kill(self) -> None:
        """Kill the worker at once and wait until it has exited."""

    async def wait_recycle(self) -> bool:
        """True once the worker asks to be replaced (``max_requests``); False if it goes
        first."""

    async def wait_restart(self) -> str | None:
        """The reason of the worker's next request for a rolling reload of every worker; None
        once it is gone."""


Spawner = Callable[[int], Awaitable[Worker]]
"""Starts a worker of the given generation (it need not be ready yet)."""
Origin = Callable[[int], str | None]
"""Where a generation's code comes from (a release directory), named in reload outcomes."""


def _log_step(message: str) -> None:
    log.info("%s", message)


def backoff(failures: int) -> float:
    """Seconds to wait before restarting workers after `failures` early deaths in a row."""
    return min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX) if failures else 0.0


def describe(error: BaseException) -> str:
    """A worker's own failure as it said it; anything else as a short type and message."""
    return str(error) if isinstance(error, WorkerFailed) else describe_error(error)


class _ReloadRequest:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def finish(self, outcome: str | ReloadFailed) -> None:
        if self.result.done():  # the requester went away
            return
        if isinstance(outcome, ReloadFailed):
            self.result.set_exception(outcome)
        else:
            self.result.set_result(outcome)


class Pool:
    """`config.workers` workers from `spawn`, kept full and replaced on demand.

    Arguments:
        config: The pool size, the reload floor (`min_active`) and the timeouts.
        spawn: Starts one worker of a given generation.
        sleep: Waits out a restart backoff (injected so a test need not wait).
        origin: Names where a generation's code comes from, for the outcome of a reload
            (nothing by default).
        ask_reload: Requests the reload a worker asks for (`request_restart`); the
            supervisor passes its own `request_reload`, which reads its config file again
            and tells systemd. `Pool.request_reload` by default.

    Example::

        pool = Pool(config, spawn)
        await pool.start()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(pool.maintain())
            print(await pool.reload(print))
    """

    def __init__(
        self,
        config: ServeConfig,
        spawn: Spawner,
        *,
        sleep: Sleep = asyncio.sleep,
        origin: Origin = lambda _generation: None,
        ask_reload: Callable[[], asyncio.Future[str]] | None = None,
    ):
        self.config = config
        self._spawn = spawn
        self._sleep = sleep
        self._origin = origin
        self._ask_reload = ask_reload or self.request_reload
        self._workers: set[Worker] = set()  # every live worker
        self._serving: list[Worker] = []  # ready and accepting, oldest first
        self._drains: dict[Worker, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._starting = 0
        self._generation = 0  # the last reload's
        self._current = 0  # the generation of the last reload that succeeded
        self._failures = 0
        self._pool_changed = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._reload_requests: list[_ReloadRequest] = []
        self._reloading: int | None = None  # the generation of the reload under way
        self._rolling = asyncio.Lock()  # one reload or recycling at a time
        self.observer = PoolObserver()  # told reloads and respawns (the metrics)

    @property
    def serving(self) -> list[int]:
        """The pids of the workers accepting now, oldest first."""
        return [worker.pid for worker in self._serving]

    async def start(self) -> None:
        """Start the first `config.workers` workers; raises `WorkerFailed` if one cannot."""
        await asyncio.gather(*(self._start_worker() for _ in range(self.config.workers)))

    async def maintain(self) -> None:
        """Replace dead workers and run requested reloads, until cancelled."""
        tasks = [asyncio.create_task(self._keep_pool()), asyncio.create_task(self._reloads())]
        if self.config.timeout:
            tasks.append(asyncio.create_task(self._check_liveness()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._abandon_requests()

    def request_reload(self, progress: Progress | None = None) -> asyncio.Future[str]:
        """Ask for a rolling reload; requests made while one runs share the next one.

        The future resolves to a summary, or raises `ReloadFailed` with the reason.
        """
        request = _ReloadRequest(progress or (lambda _message: None))
        self._reload_requests.append(request)
        self._reload_wanted.set()
        return request.result

    async def reload(self, progress: Progress) -> str:
        """Request a rolling reload and wait for its outcome."""
        return await self.request_reload(progress)

    async def stop(self) -> None:
        """Drain every worker (each within the graceful timeout) and stop watching them."""
        self._abandon_requests()
        for worker in list(self._workers):
            self._retire(worker)
        if self._drains:
            await asyncio.wait(list(self._drains.values()))
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    @property
    def generation(self) -> int:
        """The generation the pool serves: that of the last reload that succeeded."""
        return self._current

    def reconfigure(self, config: ServeConfig) -> None:
        """Use `config` from now on. A new worker count takes effect at once: missing workers
        start, surplus ones drain, oldest first, once no reload is under way."""
        self.config = config
        self._pool_changed.set()

    def states(self) -> list[tuple[Worker, str]]:
        """Every live worker and what it does: ``serving`` (oldest first), then ``starting``
        and ``draining`` (a killed worker until it has exited)."""
        others = [
            (worker, "draining" if worker in self._drains else "starting")
            for worker in self._workers
            if worker not in self._serving
        ]
        return [(w, "serving") for w in self._serving] + sorted(others, key=lambda o: o[0].pid)

    def census(self) -> dict[str, int]:
        """How many workers are starting, serving and draining now."""
        return {
            "starting": self._starting,
            "serving": len(self._serving),
            "draining": len(self._drains),
        }

    def _abandon_requests(self) -> None:
        for request in self._reload_requests:
            request.finish(ReloadFailed("the supervisor is stopping"))
        self._reload_requests = []

    async def _reloads(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            requests, self._reload_requests = self._reload_requests, []
            self.observer.reload_started()
            self._reloading = self._generation + 1  # what `_roll` makes it

            def tell(message: str, requests: list[_ReloadRequest] = requests) -> None:
                for request in requests:
                    request.progress(message)

            def report(message: str) -> None:
                log.info("%s", message)
                tell(message)

            try:
                async with self._rolling:
                    summary = await self._roll(report, tell)
            except Exception as error:
                self._reloading = None
                if not isinstance(error, ReloadFailed):
                    log.exception("Reload %d stopped by an unexpected error", self._generation)
                    error = ReloadFailed(describe(error))
                self.observer.reload_finished(False)
                log.error("reload failed: %s", error)
                tell(f"reload failed: {error}")
                for request in requests:
                    request.finish(error)
            except asyncio.CancelledError:
                self._reloading = None
                for request in requests:
                    request.finish(ReloadFailed("the supervisor is stopping"))
                raise
            else:
                self._reloading = None
                self.observer.reload_finished(True)
                log.info("%s", summary)  # a reload asked by SIGHUP has only the log
                for request in requests:
                    request.finish(summary)

    async def _roll(self, report: Progress, tell: Progress) -> str:
        """Replace every worker, a step at a time; `report` logs a step and tells the
        requesters, `tell` only tells them (a failed worker's traceback, which its own stderr
        already shows in the log)."""
        self._generation += 1
        generation = self._generation
        report(
            f"reload {generation}{self._from(generation)}: replacing workers {self.serving}, "
            f"{self.config.reload_step} at a time, at most {self.config.max_surge} extra, "
            f"keeping {self.config.active_floor} serving"
        )
        drains: list[asyncio.Task[None]] = []
        while olds := [w for w in self._serving if w.generation < generation]:
            drained, failures = await self._replace(olds, generation, report)
            drains += drained
            if failures:
                self._pool_changed.set()
                for failure in failures:
                    if isinstance(failure, WorkerFailed) and failure.details:
                        tell(f"worker {failure.pid} reported:")
                        for line in failure.details.splitlines():
                            tell(f"  {line}")
                outcome = await self._roll_back(generation, report)
                raise ReloadFailed(f"{describe(failures[0])}; {outcome}")
        if drains:
            await asyncio.wait(drains)
        self._current = generation
        return f"reload {generation} done{self._from(generation)}: workers {self.serving}"

    async def _replace(
        self, olds: list[Worker], generation: int, report: Progress
    ) -> tuple[list[asyncio.Task[None]], list[Exception]]:
        """Replace the first of `olds` by workers of `generation`: drain as many as the floor
        allows at once, start as many new workers plus the surge, and drain one more old
        worker per new one that is ready. Returns the drains and the failed starts."""
        slack = len(self._serving) - self.config.active_floor
        early = olds[: max(min(self.config.unavailable, slack), 0)]
        # A pool already at its floor still moves, one worker beyond the surge at a time.
        batch = olds[: max(self.config.max_surge + len(early), 1)]
        report(
            f"starting {len(batch)} new worker(s)"
            + (f"; draining workers {[w.pid for w in early]} first" if early else "")
        )
        drains = [self._retire(old) for old in early]
        results = await asyncio.gather(
            *(self._start_worker(generation) for _ in batch), return_exceptions=True
        )
        started = [result for result in results if not isinstance(result, BaseException)]
        for new, old in zip(started[len(early) :], batch[len(early) :], strict=False):
            if old in self._serving:
                report(f"worker {new.pid} ready; draining worker {old.pid}")
                drains.append(self._retire(old))
        failures: list[Exception] = []
        for result in results:
            if isinstance(result, Exception):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
        return drains, failures

    async def _roll_back(self, generation: int, report: Progress) -> str:
        """Return the slots a failed reload to `generation` replaced to the generation serving
        before it, by the same rules as the reload, so the pool runs one generation again;
        says how that ended."""
        replaced = [w for w in self._serving if w.generation == generation]
        if not replaced:
            return f"{len(self._serving)} workers keep serving {self.serving}"
        back = f"generation {self._current}{self._from(self._current)}"
        report(f"rolling back {len(replaced)} replaced worker(s) to {back}")
        drains: list[asyncio.Task[None]] = []
        failures: list[Exception] = []
        while not failures and (left := [w for w in replaced if w in self._serving]):
            drained, failures = await self._replace(left, self._current, report)
            drains += drained
        if drains:
            await asyncio.wait(drains)
        if failures:
            stuck = [w.pid for w in self._serving if w.generation == generation]
            return (
                f"rollback incomplete ({describe(failures[0])}): workers {stuck} still run "
                f"generation {generation}; {len(self._serving)} workers serve {self.serving}"
            )
        return (
            f"rolled back {len(replaced)} replaced worker(s) to {back}; "
            f"{len(self._serving)} workers keep serving {self.serving}"
        )

    async def _start_worker(self, generation: int | None = None) -> Worker:
        self._starting += 1
        try:
            worker = await self._spawn(self._current if generation is None else generation)
            self._workers.add(worker)
            try:
                await worker.wait_ready(self.config.startup_timeout)
            except WorkerFailed:
                self._workers.discard(worker)
                raise
        finally:
            self._starting -= 1
        self._serving.append(worker)
        self._background(self._watch(worker))
        self._background(self._recycle_when_due(worker))
        self._background(self._restarts_asked(worker))
        return worker

    def _from(self, generation: int) -> str:
        origin = self._origin(generation)
        return f" (code: {origin})" if origin else ""

    def _retire(self, worker: Worker) -> asyncio.Task[None]:
        if worker in self._serving:
            self._serving.remove(worker)
        task = self._drains.get(worker)
        if task is None:
            task = self._drains[worker] = asyncio.create_task(self._drain(worker))
        return task

    async def _drain(self, worker: Worker) -> None:
        try:
            code = await worker.stop(self.config.graceful_timeout)
        finally:
            self._workers.discard(worker)
            del self._drains[worker]
        if code is None:
            log.warning("Worker %d killed: still running after the graceful timeout", worker.pid)
        else:
            log.info("Worker %d drained (exit code %d)", worker.pid, code)

    async def _watch(self, worker: Worker) -> None:
        code = await worker.wait_exit()
        if worker not in self._serving:
            return  # drained or killed on purpose
        self._workers.discard(worker)
        log.warning("Worker %d died (exit code %d); replacing it", worker.pid, code)
        self._lost(worker)

    async def _recycle_when_due(self, worker: Worker) -> None:
        """Replace a worker that asks for it (`max_requests`) or has served its lifetime
        (`max_worker_lifetime`), by the reload rules (`min_active`, `max_surge`), one at a
        time."""
        reason = await self._recycle_reason(worker)
        if reason is None:
            return
        async with self._rolling:
            if worker not in self._serving:
                return  # a reload replaced it meanwhile, or it died
            log.info("Worker %d %s; replacing it", worker.pid, reason)
            drains, failures = await self._replace([worker], self._current, _log_step)
            if failures:
                log.error("Cannot replace worker %d: %s", worker.pid, describe(failures[0]))
                self._pool_changed.set()
            if drains:
                await asyncio.wait(drains)

    async def _recycle_reason(self, worker: Worker) -> str | None:
        """Why `worker` is due for replacement, once it is; None if it goes first."""
        lifetime = self.config.max_worker_lifetime
        if lifetime:
            lifetime += random.uniform(0, self.config.max_worker_lifetime_jitter)
            try:
                async with asyncio.timeout(lifetime):
                    asked = await worker.wait_recycle()
            except TimeoutError:
                return f"reached its max lifetime ({lifetime:.1f} s)"
        else:
            asked = await worker.wait_recycle()
        return "served its max requests" if asked else None

    async def _restarts_asked(self, worker: Worker) -> None:
        """Roll every worker when `worker` asks for it (a setting it applied needs a
        restart): one reload for a change, however many workers ask."""
        while (reason := await worker.wait_restart()) is not None:
            asked = f"Worker {worker.pid} asks for a restart ({reason})"
            if worker not in self._serving:
                log.info("%s: it is being replaced already", asked)
            elif self._reload_requests:
                log.info("%s: merged into the reload requested", asked)
            elif self._reloading is not None and self._reloading > worker.generation:
                log.info("%s: merged into reload %d, under way", asked, self._reloading)
            else:
                log.info("%s: rolling reload", asked)
                self._ask_reload().add_done_callback(lambda result: result.exception())

    def _lost(self, worker: Worker) -> None:
        """Take a dead or hung worker out of service and have it replaced."""
        self._serving.remove(worker)
        self._failures = 0 if worker.uptime() >= STABLE_AFTER else self._failures + 1
        self._pool_changed.set()

    async def _check_liveness(self) -> None:
        """Kill and replace every serving worker whose event loop stays silent past the
        timeout: a blocked loop neither answers nor drains, so it is not asked to."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for worker in list(self._serving):
                if (silent := worker.silent_for()) > self.config.timeout:
                    log.warning(
                        "Worker %d killed: its event loop was silent for %.1f s (timeout %g s); "
                        "replacing it",
                        worker.pid,
                        silent,
                        self.config.timeout,
                    )
                    self._lost(worker)
                    self._drains[worker] = asyncio.create_task(self._kill(worker))

    async def _kill(self, worker: Worker) -> None:
        try:
            await worker.kill()
        finally:
            self._workers.discard(worker)
            del self._drains[worker]

    async def _keep_pool(self) -> None:
        """Replace dead workers, with an exponential backoff while they keep dying."""
        while True:
            await self._pool_changed.wait()
            self._pool_changed.clear()
            missing = self.config.workers - len(self._serving) - self._starting
            if missing < 0:
                await self._drain_surplus()
            if missing <= 0:
                continue
            if self._failures:
                delay = backoff(self._failures)
                log.info("Restarting %d worker(s) in %.1f s", missing, delay)
                await self._sleep(delay)
                missing = self.config.workers - len(self._serving) - self._starting
            generation = self._wanted_generation()
            results = await asyncio.gather(
                *(self._start_worker(generation) for _ in range(missing)), return_exceptions=True
            )
            self.observer.respawned(sum(not isinstance(r, BaseException) for r in results))
            for result in results:
                if isinstance(result, Exception):  # a failed start, or no process at all
                    log.error("Cannot replace a worker: %s", describe(result))
                    self._failures += 1
                    self._pool_changed.set()
                elif isinstance(result, BaseException):
                    raise result
                elif result.generation > self._wanted_generation() and result in self._serving:
                    # the reload it was started for failed meanwhile, its rollback missed it
                    log.info("Draining worker %d: reload %d failed", result.pid, generation)
                    self._retire(result)
                    self._pool_changed.set()

    def _wanted_generation(self) -> int:
        """The generation a missing worker starts at: that of the reload under way or
        requested (the reload would replace a worker of the old one at once), else the
        generation serving."""
        if self._reload_requests:
            return (self._generation if self._reloading is None else self._reloading) + 1
        return self._current if self._reloading is None else self._reloading

    async def _drain_surplus(self) -> None:
        """Drain the oldest workers beyond `config.workers` (the count was lowered), once no
        reload or recycling is replacing workers."""
        async with self._rolling:
            surplus = self._serving[: max(len(self._serving) - self.config.workers, 0)]
            if surplus:
                log.info(
                    "Draining workers %s: %d wanted",
                    [w.pid for w in surplus],
                    len(self._serving) - len(surplus),
                )
            for worker in surplus:
                self._retire(worker)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
