"""The supervisor: holds the sockets, keeps the pool full and rolls reloads through it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Literal

from . import activation
from .config import ServeConfig, private_control_socket
from .configfile import restart_only_changes
from .control import serve_control
from .errors import ReloadFailed, WorkerFailed
from .forkserver import ForkServerError, ForkServers
from .listeners import Listeners
from .logfiles import reopen_log_files
from .metrics import SupervisorMetrics
from .options import RANGES
from .pool import Pool, Progress, Worker
from .process import WorkerProcess
from .proctitle import set_title
from .release import Releases
from .reloader import CodeWatcher
from .sdnotify import Notifier, monotonic_usec

log = logging.getLogger("quart_waffle.supervisor")

State = Literal["starting", "serving", "reloading", "stopping"]
Reread = Callable[[], ServeConfig]
"""Reads the configuration anew for a reload (the config file); raises `ValueError`."""

STATUS_INTERVAL = 1.0  # seconds between checks of the service manager's STATUS line
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class Supervisor:
    """Runs `config.workers` workers on sockets bound once, and replaces them on demand.

    The pool rules (batches, merged reload requests, backoff) are `Pool`'s; this class binds
    the sockets (or takes those systemd passed), serves the control socket, handles signals,
    tells systemd its state and spawns real processes.

    Arguments:
        config: What to serve, and how.
        reread: Called at each reload for the configuration to use from then on (the config
            file read anew); a `ValueError` fails the reload. None keeps `config`.

    Example::

        asyncio.run(Supervisor(ServeConfig(app="examples.app:app", workers=4)).run())
    """

    def __init__(self, config: ServeConfig, *, reread: Reread | None = None) -> None:
        self.config = config
        self.releases = Releases(config.release_link)
        self.pool = Pool(
            config, self._spawn, origin=self.releases.origin, ask_reload=self.request_reload
        )
        self.metrics: SupervisorMetrics | None = None
        if config.metrics_file:
            self.metrics = SupervisorMetrics(
                config.metrics_file, self.pool.census, lambda: self.pool.generation
            )
            self.pool.observer = self.metrics
        self.state: State = "starting"
        self._reread = reread
        self._listeners: Listeners | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()  # every worker has drained
        self._reloads_pending = 0
        self._notifier = Notifier(None)
        self._fork_servers = ForkServers()
        self._started_at = time.monotonic()

    async def run(self) -> int:
        """Serve until SIGTERM, SIGINT or SIGQUIT (or `stop`); returns the process exit code.

        Raises `ServeError` when the sockets cannot be bound or the control socket created.
        """
        self._notifier = Notifier.from_environment()
        listeners = self._listeners = self._listen()
        loop = asyncio.get_running_loop()
        private = contextlib.ExitStack()
        try:
            control_path = self.config.control_socket or private.enter_context(
                private_control_socket()
            )
            control = await serve_control(
                control_path, self.reload, stop=self.stop_and_wait, status=self.status
            )
        except BaseException:
            private.close()
            listeners.close()
            self._notifier.close()
            raise
        handlers: dict[signal.Signals, Callable[[], None]] = {
            signal.SIGHUP: self._reload_on_signal,
            signal.SIGTTIN: lambda: self.resize(+1),
            signal.SIGTTOU: lambda: self.resize(-1),
            signal.SIGUSR1: self._reopen_log_files,
            **dict.fromkeys(STOP_SIGNALS, self.stop),
        }
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
        self._title()
        log.info(
            "Listening on %s (control socket %s)", ", ".join(listeners.addresses()), control_path
        )
        background: list[asyncio.Task[None]] = []
        try:
            try:
                await self.pool.start()
            except WorkerFailed as error:
                log.error("Cannot start: %s", error)
                return 1
            log.info("Serving with workers %s", self.pool.serving)
            if self.metrics is not None:
                self.metrics.start()
            self.state = "reloading" if self._reloads_pending else "serving"
            self._notify(READY="1")
            background.append(asyncio.create_task(self.pool.maintain()))
            if self.config.reload:
                watcher = CodeWatcher(
                    self.config.reload_dirs,
                    self.request_reload,
                    includes=self.config.reload_includes,
                    excludes=self.config.reload_excludes,
                )
                watcher.start()
                background.append(asyncio.create_task(watcher.stopped()))
            if self._notifier.enabled:
                background.append(asyncio.create_task(self._report_status()))
            await self._stopping.wait()
            log.info("Stopping: draining the workers")
            return 0
        finally:
            self.state = "stopping"
            self._notify(STOPPING="1")
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.gather(self.pool.stop(), self._fork_servers.close())
            if self.metrics is not None:
                self.metrics.close()  # the last census: no worker left
            self._stopped.set()
            control.close()
            await control.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control_path)
            private.close()
            for signum in handlers:
                loop.remove_signal_handler(signum)
            listeners.close()
            self._notifier.close()

    def stop(self) -> None:
        """Drain every worker and exit, as SIGTERM does."""
        self._stopping.set()

    async def stop_and_wait(self) -> None:
        """Stop, and return once every worker has drained."""
        self.stop()
        await self._stopped.wait()

    def request_reload(
        self, progress: Progress | None = None, fresh_fork_server: bool = False
    ) -> asyncio.Future[str]:
        """Ask for a rolling reload; requests made while one runs share the next one. With
        `fresh_fork_server`, the next fork server claimed is started anew, not reused.

        With `reread`, the configuration is read anew first; if it cannot be, or changes what
        only a restart can (`configfile.RESTART_ONLY`: the listening sockets, ...), the reload
        fails at once and nothing is replaced. The future resolves to a summary, or raises
        `ReloadFailed` with the reason.
        """
        try:
            self._apply(self._reread() if self._reread is not None else self.config)
        except ValueError as error:
            log.error("reload failed: %s", error)
            failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            failed.set_exception(ReloadFailed(str(error)))
            return failed
        if fresh_fork_server:
            self._fork_servers.renew()
            if progress is not None and self.config.fork_server:
                progress("a fork server started for it will fork the new workers")
        future = self.pool.request_reload(progress)
        self._reloads_pending += 1
        if self.state == "serving":  # not while the first pool starts, nor once stopping
            self.state = "reloading"
            self._notify(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec()))
        future.add_done_callback(self._reload_done)
        return future

    async def reload(self, progress: Progress, fresh_fork_server: bool = False) -> str:
        """Request a rolling reload and wait for its outcome."""
        return await self.request_reload(progress, fresh_fork_server)

    def resize(self, change: int) -> None:
        """Add (SIGTTIN) or remove (SIGTTOU) workers: at least 1, at most the workers option's
        maximum. A reload that reads a config file sets the count it names again."""
        low, high = RANGES["workers"]
        workers = int(min(max(self.config.workers + change, low), high))
        if workers == self.config.workers:
            log.warning("Keeping %d worker(s): the count is from %g to %g", workers, low, high)
            return
        floor = self.config.min_active
        try:
            config = dataclasses.replace(
                self.config,
                workers=workers,
                min_active=None if floor is None else min(floor, workers),
            )
        except ValueError as error:
            log.warning("Keeping %d worker(s): %s", self.config.workers, error)
            return
        log.info("Workers: %d -> %d", self.config.workers, workers)
        self._apply(config)

    def status(self) -> dict[str, Any]:
        """The supervisor's state, generation and workers, as `quart-waffle workers` shows
        them."""
        listeners = self._listeners.addresses() if self._listeners is not None else []
        return {
            "pid": os.getpid(),
            "app": self.config.app,
            "state": self.state,
            "generation": self.pool.generation,
            "workers_wanted": self.config.workers,
            "uptime": round(time.monotonic() - self._started_at, 3),
            "listening": listeners,
            "fork_servers": self._fork_servers.pids(),
            "workers": [
                {
                    "pid": worker.pid,
                    "generation": worker.generation,
                    "state": state,
                    "age": round(worker.uptime(), 3),
                    "requests": getattr(worker, "requests", None),
                }
                for worker, state in self.pool.states()
            ],
        }

    def _apply(self, config: ServeConfig) -> None:
        """Use `config` from now on (the pool's size and timeouts, new workers' settings)."""
        if config == self.config:
            return
        if changes := restart_only_changes(self.config, config):
            raise ValueError(
                f"the configuration changes {'; '.join(changes)}: these change only with a "
                "restart (stop, then serve); nothing was replaced"
            )
        self.config = config
        self.pool.reconfigure(config)

    def _listen(self) -> Listeners:
        passed = activation.passed_sockets()
        if not passed:
            return Listeners.bind(self.config)
        tls = self.config.certfile is not None
        secure = [sock for name, sock in passed if tls and name != activation.INSECURE_NAME]
        insecure = [sock for name, sock in passed if sock not in secure]
        log.info(
            "Using %d socket(s) passed by the service manager (socket activation); "
            "the bind options are not used",
            len(passed),
        )
        return Listeners(secure, insecure)

    def _reload_on_signal(self) -> None:
        # Nobody waits on a signal's reload: its outcome is in the log only.
        self.request_reload().add_done_callback(lambda result: result.exception())

    def _reload_done(self, _result: asyncio.Future[str]) -> None:
        self._reloads_pending -= 1
        if self._reloads_pending == 0:
            self._fork_servers.retire({self.pool.generation})
        if self._reloads_pending == 0 and self.state == "reloading":
            self.state = "serving"
            self._notify(READY="1")
        self._title()

    def _reopen_log_files(self) -> None:
        reopened = reopen_log_files()
        workers = [worker for worker, state in self.pool.states() if state != "starting"]
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGUSR1)
        log.info(
            "Reopened the log files %s; asked workers %s to reopen theirs",
            reopened,
            [worker.pid for worker in workers],
        )

    def _title(self) -> None:
        set_title("master", self.config.app, self.pool.generation)

    def _status_line(self) -> str:
        counts: dict[str, int] = {}
        for _worker, state in self.pool.states():
            counts[state] = counts.get(state, 0) + 1
        workers = ", ".join(f"{count} {state}" for state, count in counts.items()) or "none"
        return f"{self.state}, generation {self.pool.generation}; workers: {workers}"

    def _notify(self, **fields: str) -> None:
        self._notifier.send(**fields, STATUS=self._status_line())

    async def _report_status(self) -> None:
        """Keep the service manager's STATUS line current, and pet its watchdog."""
        interval = self._notifier.watchdog_interval
        sent = ""
        next_beat = time.monotonic()
        while True:
            line = self._status_line()
            beat = interval is not None and time.monotonic() >= next_beat
            if line != sent or beat:
                self._notifier.send(**({"WATCHDOG": "1"} if beat else {}), STATUS=line)
                sent = line
            if beat and interval is not None:
                next_beat = time.monotonic() + interval
            await asyncio.sleep(min(STATUS_INTERVAL, interval or STATUS_INTERVAL))

    async def _spawn(self, generation: int) -> Worker:
        assert self._listeners is not None, "workers are spawned only while running"
        cwd = self.releases.directory(generation)
        forks = await self._fork_servers.get(self.config, self._listeners, generation, cwd)
        if forks is not None:
            try:
                return await WorkerProcess.spawn(
                    self.config, self._listeners, generation, cwd=cwd, fork=forks.fork
                )
            except ForkServerError as error:
                log.warning("%s: starting the worker from a fresh interpreter", error)
        return await WorkerProcess.spawn(self.config, self._listeners, generation, cwd=cwd)
