"""The supervisor: holds the sockets, keeps the pool full and rolls reloads through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from .config import ServeConfig, default_control_socket
from .control import serve_control
from .errors import ReloadFailed, WorkerFailed
from .listeners import Listeners
from .process import WorkerProcess

Progress = Callable[[str], None]

log = logging.getLogger("quart_waffle.supervisor")

# A worker that dies sooner than this after starting counts towards the restart backoff.
STABLE_AFTER = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


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


class Supervisor:
    """Runs `config.workers` workers on sockets bound once, and replaces them on demand.

    Example::

        asyncio.run(Supervisor(ServeConfig(app="examples.app:app", workers=4)).run())
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._listeners: Listeners | None = None
        self._workers: set[WorkerProcess] = set()  # every live process
        self._serving: list[WorkerProcess] = []  # ready and accepting, oldest first
        self._drains: dict[WorkerProcess, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._starting = 0
        self._generation = 0
        self._failures = 0
        self._stopping = asyncio.Event()
        self._pool_changed = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._reload_requests: list[_ReloadRequest] = []

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code."""
        listeners = self._listeners = Listeners.bind(self.config)
        control_path = self.config.control_socket or default_control_socket(os.getpid())
        control = await serve_control(control_path, self.reload)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        log.info(
            "Listening on %s (control socket %s)", ", ".join(listeners.addresses()), control_path
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await asyncio.gather(*(self._start_worker() for _ in range(self.config.workers)))
            except WorkerFailed as error:
                log.error("Cannot start: %s", error)
                return 1
            log.info("Serving with workers %s", self._pids(self._serving))
            tasks = [asyncio.create_task(self._keep_pool()), asyncio.create_task(self._reloads())]
            await self._stopping.wait()
            log.info("Stopping: draining %d workers", len(self._workers))
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for request in self._reload_requests:
                request.finish(ReloadFailed("the supervisor is stopping"))
            await self._stop_all()
            control.close()
            await control.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control_path)
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            listeners.close()

    def request_reload(self, progress: Progress | None = None) -> asyncio.Future[str]:
        """Ask for a rolling reload; requests made while one runs share the next one.

        The future resolves to a summary, or raises `ReloadFailed` with the reason.
        """
        request = _ReloadRequest(progress or (lambda _message: None))
        self._reload_requests.append(request)
        self._reload_wanted.set()
        return request.result

    def _reload_on_signal(self) -> None:
        # Nobody waits on a signal's reload: its outcome is in the log only.
        self.request_reload().add_done_callback(lambda result: result.exception())

    async def reload(self, progress: Progress) -> str:
        """Request a rolling reload and wait for its outcome."""
        return await self.request_reload(progress)

    async def _reloads(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            requests, self._reload_requests = self._reload_requests, []

            def report(message: str, requests: list[_ReloadRequest] = requests) -> None:
                log.info("%s", message)
                for request in requests:
                    request.progress(message)

            try:
                summary = await self._roll(report)
            except Exception as error:
                if not isinstance(error, ReloadFailed):
                    log.exception("Reload %d stopped by an unexpected error", self._generation)
                    error = ReloadFailed(_describe(error))
                report(f"reload failed: {error}")
                for request in requests:
                    request.finish(error)
            except asyncio.CancelledError:
                for request in requests:
                    request.finish(ReloadFailed("the supervisor is stopping"))
                raise
            else:
                for request in requests:
                    request.finish(summary)

    async def _roll(self, report: Progress) -> str:
        self._generation += 1
        generation = self._generation
        old_pids = self._pids(self._serving)
        report(
            f"reload {generation}: replacing workers {old_pids}, "
            f"{self.config.batch_size} at a time, keeping {self.config.active_floor} serving"
        )
        drains: list[asyncio.Task[None]] = []
        while batch := [w for w in self._serving if w.generation < generation][
            : self.config.batch_size
        ]:
            report(f"starting {len(batch)} new worker(s)")
            results = await asyncio.gather(
                *(self._start_worker(generation) for _ in batch), return_exceptions=True
            )
            started = [result for result in results if isinstance(result, WorkerProcess)]
            for new, old in zip(started, batch, strict=False):
                if old in self._serving:
                    report(f"worker {new.pid} ready; draining worker {old.pid}")
                    drains.append(self._retire(old))
            failures = [result for result in results if isinstance(result, BaseException)]
            for failure in failures:
                if not isinstance(failure, Exception):
                    raise failure
            if failures:
                self._pool_changed.set()
                raise ReloadFailed(
                    f"{_describe(failures[0])}; {len(self._serving)} workers keep serving "
                    f"{self._pids(self._serving)}"
                )
        if drains:
            await asyncio.wait(drains)
        return f"reload {generation} done: workers {self._pids(self._serving)}"

    async def _start_worker(self, generation: int | None = None) -> WorkerProcess:
        assert self._listeners is not None
        self._starting += 1
        try:
            worker = await WorkerProcess.spawn(
                self.config, self._listeners, self._generation if generation is None else generation
            )
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
        return worker

    def _retire(self, worker: WorkerProcess) -> asyncio.Task[None]:
        if worker in self._serving:
            self._serving.remove(worker)
        task = self._drains.get(worker)
        if task is None:
            task = self._drains[worker] = asyncio.create_task(self._drain(worker))
        return task

    async def _drain(self, worker: WorkerProcess) -> None:
        try:
            code = await worker.stop(self.config.graceful_timeout)
        finally:
            self._workers.discard(worker)
            del self._drains[worker]
        if code is None:
            log.warning("Worker %d killed: still running after the graceful timeout", worker.pid)
        else:
            log.info("Worker %d drained (exit code %d)", worker.pid, code)

    async def _watch(self, worker: WorkerProcess) -> None:
        code = await worker.wait_exit()
        if worker not in self._serving:
            return  # drained on purpose
        self._serving.remove(worker)
        self._workers.discard(worker)
        self._failures = 0 if worker.uptime() >= STABLE_AFTER else self._failures + 1
        log.warning("Worker %d died (exit code %d); replacing it", worker.pid, code)
        self._pool_changed.set()

    async def _keep_pool(self) -> None:
        """Replace dead workers, with an exponential backoff while they keep dying."""
        while True:
            await self._pool_changed.wait()
            self._pool_changed.clear()
            missing = self.config.workers - len(self._serving) - self._starting
            if missing <= 0:
                continue
            if self._failures:
                delay = min(BACKOFF_FIRST * 2 ** (self._failures - 1), BACKOFF_MAX)
                log.info("Restarting %d worker(s) in %.1f s", missing, delay)
                await asyncio.sleep(delay)
            results = await asyncio.gather(
                *(self._start_worker() for _ in range(missing)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, Exception):  # a failed start, or no process at all
                    log.error("Cannot replace a worker: %s", _describe(result))
                    self._failures += 1
                    self._pool_changed.set()
                elif isinstance(result, BaseException):
                    raise result

    async def _stop_all(self) -> None:
        for worker in list(self._workers):
            self._retire(worker)
        if self._drains:
            await asyncio.wait(list(self._drains.values()))
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    @staticmethod
    def _pids(workers: list[WorkerProcess]) -> list[int]:
        return [worker.pid for worker in workers]


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, WorkerFailed) else f"{type(error).__name__}: {error}"
