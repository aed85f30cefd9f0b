"""The supervisor: holds the sockets, keeps the pool full and rolls reloads through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from .config import ServeConfig, private_control_socket
from .control import serve_control
from .errors import WorkerFailed
from .listeners import Listeners
from .metrics import SupervisorMetrics
from .pool import Pool, Progress, Worker
from .process import WorkerProcess
from .release import Releases
from .reloader import CodeWatcher

log = logging.getLogger("quart_waffle.supervisor")


class Supervisor:
    """Runs `config.workers` workers on sockets bound once, and replaces them on demand.

    The pool rules (batches, merged reload requests, backoff) are `Pool`'s; this class binds
    the sockets, serves the control socket, handles signals and spawns real processes.

    Example::

        asyncio.run(Supervisor(ServeConfig(app="examples.app:app", workers=4)).run())
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.releases = Releases(config.release_link)
        self.pool = Pool(config, self._spawn, origin=self.releases.origin)
        self.metrics: SupervisorMetrics | None = None
        if config.metrics_file:
            self.metrics = SupervisorMetrics(
                config.metrics_file, self.pool.census, lambda: self.pool.generation
            )
            self.pool.observer = self.metrics
        self._listeners: Listeners | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code.

        Raises `ServeError` when the sockets cannot be bound or the control socket created.
        """
        listeners = self._listeners = Listeners.bind(self.config)
        loop = asyncio.get_running_loop()
        private = contextlib.ExitStack()
        try:
            control_path = self.config.control_socket or private.enter_context(
                private_control_socket()
            )
            control = await serve_control(control_path, self.reload)
        except BaseException:
            private.close()
            listeners.close()
            raise
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        log.info(
            "Listening on %s (control socket %s)", ", ".join(listeners.addresses()), control_path
        )
        maintain: asyncio.Task[None] | None = None
        watching: asyncio.Task[None] | None = None
        try:
            try:
                await self.pool.start()
            except WorkerFailed as error:
                log.error("Cannot start: %s", error)
                return 1
            log.info("Serving with workers %s", self.pool.serving)
            if self.metrics is not None:
                self.metrics.start()
            maintain = asyncio.create_task(self.pool.maintain())
            if self.config.reload:
                watcher = CodeWatcher(
                    self.config.reload_dirs,
                    self.request_reload,
                    includes=self.config.reload_includes,
                    excludes=self.config.reload_excludes,
                )
                watcher.start()
                watching = asyncio.create_task(watcher.stopped())
            await self._stopping.wait()
            log.info("Stopping: draining the workers")
            return 0
        finally:
            for task in (maintain, watching):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await self.pool.stop()
            if self.metrics is not None:
                self.metrics.close()  # the last census: no worker left
            control.close()
            await control.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control_path)
            private.close()
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            listeners.close()

    def request_reload(self, progress: Progress | None = None) -> asyncio.Future[str]:
        """Ask for a rolling reload; requests made while one runs share the next one.

        The future resolves to a summary, or raises `ReloadFailed` with the reason.
        """
        return self.pool.request_reload(progress)

    async def reload(self, progress: Progress) -> str:
        """Request a rolling reload and wait for its outcome."""
        return await self.pool.reload(progress)

    def _reload_on_signal(self) -> None:
        # Nobody waits on a signal's reload: its outcome is in the log only.
        self.request_reload().add_done_callback(lambda result: result.exception())

    async def _spawn(self, generation: int) -> Worker:
        assert self._listeners is not None, "workers are spawned only while running"
        cwd = self.releases.directory(generation)
        return await WorkerProcess.spawn(self.config, self._listeners, generation, cwd=cwd)
