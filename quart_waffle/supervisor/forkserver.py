"""The supervisor's side of the fork servers (`zygote`): each generation's workers are forked
by one, started with its first worker, unless the previous generation's may serve it too (same
directory and settings, no `preload_app`, and none of the files it imported changed since);
one is closed once no generation it forks for is serving or starting. Where one cannot run
(not Linux, or it fails to start), workers start from fresh interpreters, as
`WorkerProcess.spawn` does without one."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import ClassVar

from . import procfs
from .config import ServeConfig
from .errors import WorkerFailed
from .listeners import Listeners
from .orphans import reap_orphans
from .process import start_interpreter
from .scheduling import GENTLE_START, set_policy, start_gently
from .worker import FAILED, WorkerSpec
from .zygote import CHECK, ERROR, FORKED, FRESH, MAX_MESSAGE, READY, ZygoteSpec

log = logging.getLogger("quart_waffle.supervisor")

PR_SET_CHILD_SUBREAPER = 36
# A fork server answers a request in milliseconds; one that does not is broken.
FORK_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
CLOCK_MARGIN_NS = 500_000_000  # file times are coarse, and a clock may step back a little


class ForkServerError(Exception):
    """A fork server that could not start or answer (not a failure of the app's code)."""


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux), so a worker forked by a fork
    server is its child; False where that, or waiting through a pidfd, is not possible."""
    if sys.platform != "linux" or not hasattr(os, "pidfd_open"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class ForkedProcess:
    """A worker forked by a fork server and adopted by the supervisor: waited for and killed
    through a pidfd, so its pid is never mistaken for a later process's."""

    waited: ClassVar[set[int]] = set()
    """The pids of those not reaped yet (the orphan reaper leaves them alone)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)
        ForkedProcess.waited.add(pid)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # not adopted: its exit status went elsewhere
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        ForkedProcess.waited.discard(self.pid)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


class ForkServer:
    """A fork server, running in the directory of the generation it was started for.

    One that fails a request (no answer in time, a broken channel, a cancelled request) is
    retired at once: killed, and never asked again. Its answers cannot be matched to requests
    any more, and a worker it forked then is killed if its answer comes (`_kill_strays`).
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        channel: socket.socket,
        generation: int,
        code: tuple[str, str, bool, str | None],
    ) -> None:
        self.process = process
        self.generation = generation
        self.code = code
        """What its workers run: the app, the worker class, `preload_app` and the directory."""
        self.started_at = time.monotonic()
        self._channel = channel
        self._requests = asyncio.Lock()  # one request answered at a time
        self._closing = False
        self._retired: asyncio.Task[None] | None = None
        self._exit: asyncio.Task[None] | None = None  # watched once it is ready

    @property
    def usable(self) -> bool:
        """Whether it may be asked to fork: neither closing, retired nor exited."""
        return not self._closing and self._retired is None and self.process.returncode is None

    @classmethod
    async def start(
        cls, config: ServeConfig, listeners: Listeners, generation: int, cwd: str | None
    ) -> ForkServer:
        """Start it and wait until it has imported what it preloads.

        Raises `WorkerFailed` when the app module it preloads (`preload_app`) fails, as a
        worker would; `ForkServerError` or `OSError` when it cannot start otherwise.
        """
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent.setblocking(False)
        started_ns = time.time_ns() - CLOCK_MARGIN_NS
        spec = ZygoteSpec(
            config.app, config.worker_class, config.preload_app, child.fileno(), started_ns
        )
        sockets = [sock.fileno() for sock in (*listeners.secure, *listeners.insecure)]
        try:
            process = await start_interpreter(
                "quart_waffle.supervisor.zygote",
                "run",
                spec.to_json(),
                generation,
                cwd,
                (child.fileno(), *sockets),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        server = cls(process, parent, generation, _code(config, cwd))
        # Its imports take the CPU the serving workers leave idle, for a while at most.
        start_gently(process.pid)
        gentle = asyncio.get_running_loop().call_later(
            GENTLE_START, set_policy, process.pid, "SCHED_OTHER"
        )
        try:
            async with asyncio.timeout(config.startup_timeout):
                answer = await server._answer()
        except BaseException:
            await server.close()
            raise
        finally:
            gentle.cancel()
            set_policy(process.pid, "SCHED_OTHER")
        if answer == READY:
            server._exit = asyncio.create_task(server._watch_exit())
            return server
        await server.close()
        reason, _, details = answer.partition("\n")
        if reason.startswith(FAILED):
            raise WorkerFailed(process.pid, reason.removeprefix(FAILED).strip(), details)
        raise ForkServerError(f"fork server {process.pid}: {reason or 'exited'}")

    async def fork(self, spec: WorkerSpec, channel: socket.socket) -> ForkedProcess:
        """Fork a worker serving as `spec` says, over `channel` (its end of the channel)."""
        async with self._requests:
            answer = await self._ask(
                lambda: socket.send_fds(
                    self._channel, [spec.to_json().encode()], [channel.fileno()]
                )
            )
            kind, _, value = answer.partition(" ")
            if kind == FORKED:
                return ForkedProcess(int(value))
            if kind != ERROR:
                self._retire()
            reason = value if kind == ERROR else "exited"
            raise ForkServerError(f"fork server {self.process.pid}: {reason}")

    async def unchanged(self, generation: int) -> bool:
        """Whether what it loaded is still what is on disk (see `loaded`), so that it may fork
        the workers of `generation` too; False also when it cannot tell (then it is retired)."""
        try:
            async with self._requests:
                answer = await self._ask(
                    lambda: self._channel.send(f"{CHECK} {generation}".encode())
                )
        except ForkServerError:
            return False
        if answer != FRESH:
            changed = answer.partition(" ")[2]
            log.info(
                "Fork server %d is not reused: %s changed, or changed while it loaded it",
                self.process.pid,
                changed,
            )
        return answer == FRESH

    async def _ask(self, send: Callable[[], object]) -> str:
        """Send a request (`send`) and return its answer; the caller holds `_requests`, one
        request answered at a time. Raises `ForkServerError` when it is not usable, or fails
        the request: then it is retired, as it is when the request is cancelled."""
        if not self.usable:
            raise ForkServerError(f"fork server {self.process.pid}: closing or retired")
        try:
            async with asyncio.timeout(FORK_TIMEOUT):
                send()
                return await self._answer()
        except (OSError, TimeoutError) as error:
            self._retire()
            raise ForkServerError(f"fork server {self.process.pid}: {error!r}") from None
        except asyncio.CancelledError:
            self._retire()
            raise

    async def close(self) -> None:
        """Close its channel, which it exits on; kill it if it does not."""
        self._closing = True
        if self._retired is not None:
            await self._retired
        else:
            self._channel.close()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._exit is not None:
            await self._exit

    def _retire(self) -> None:
        if self._retired is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self._retired = asyncio.create_task(self._kill_strays())

    async def _kill_strays(self) -> None:
        """Once it is dead, kill the workers of the answers it sent too late, then close the
        channel (its queued answers are read first)."""
        await self.process.wait()
        while True:
            try:
                answer = self._channel.recv(MAX_MESSAGE).decode(errors="replace")
            except OSError:
                break
            if not answer:
                break
            kind, _, value = answer.partition(" ")
            if kind == FORKED:
                await _kill_stray(int(value), self.process.pid)
        self._channel.close()

    async def _watch_exit(self) -> None:
        code = await self.process.wait()
        if not self._closing and self._retired is None:
            log.warning(
                "Fork server %d of generation %d exited with code %d: the next worker it would "
                "have forked starts another",
                self.process.pid,
                self.generation,
                code,
            )

    async def _answer(self) -> str:
        loop = asyncio.get_running_loop()
        return (await loop.sock_recv(self._channel, MAX_MESSAGE)).decode(errors="replace")


class ForkServers:
    """The fork server of each generation that starts workers: the previous generation's when
    it may serve, else one started on demand."""

    def __init__(self) -> None:
        self._servers: dict[int, asyncio.Task[ForkServer | None]] = {}
        self._available: bool | None = None  # can this process adopt forked workers?
        self._closing: dict[asyncio.Task[None], ForkServer] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._renewed_at = float("-inf")  # fork servers started before are not reused

    def renew(self) -> None:
        """Reuse no fork server started before now: what a module it imported read (a data
        file, a certificate bundle) is not stamped, so only its user knows it changed. Holds
        until a fork server has started since, whether the reload that asked succeeds or not."""
        self._renewed_at = time.monotonic()

    def pids(self) -> list[int]:
        """The pids of the fork servers running or exiting."""
        running = {
            server.process.pid
            for task in self._servers.values()
            if (server := _server(task)) is not None and server.usable
        }
        return sorted(running) + [server.process.pid for server in self._closing.values()]

    async def get(
        self, config: ServeConfig, listeners: Listeners, generation: int, cwd: str | None
    ) -> ForkServer | None:
        """The fork server of `generation`, started if need be; None when its workers start
        from fresh interpreters (`fork_server` off, or no fork server can run: logged once).
        Raises `WorkerFailed` when the app module it preloads fails to import."""
        if not config.fork_server:
            return None
        if self._available is None:
            self._available = become_subreaper()
            if self._available:
                self._reaper = asyncio.create_task(reap_orphans(lambda: ForkedProcess.waited))
            else:
                log.info("No fork server on this system: workers start from fresh interpreters")
        if not self._available:
            return None
        task = self._servers.get(generation)
        if task is None or (task.done() and _gone(task)):
            if task is not None:
                self._close_later(task)
            task = asyncio.create_task(self._claim(config, listeners, generation, cwd))
            self._servers[generation] = task
        return await asyncio.shield(task)

    async def _claim(
        self, config: ServeConfig, listeners: Listeners, generation: int, cwd: str | None
    ) -> ForkServer | None:
        """The newest running fork server if it may fork `generation`'s workers, else a new
        one."""
        code = _code(config, cwd)
        running = [
            server
            for other, task in sorted(self._servers.items(), reverse=True)
            if other != generation and (server := _server(task)) is not None
            if server.usable and server.code == code
        ]
        if running and running[0].started_at < self._renewed_at:
            log.info(
                "Fork server %d is not reused: a fresh one was asked for (reload "
                "--fresh-fork-server)",
                running[0].process.pid,
            )
        # A preloaded app's module may read what no stamp covers: it is imported anew.
        elif running and not config.preload_app and await running[0].unchanged(generation):
            log.info(
                "Fork server %d forks generation %d's workers too: nothing it imported changed",
                running[0].process.pid,
                generation,
            )
            return running[0]
        return await self._start(config, listeners, generation, cwd)

    async def _start(
        self, config: ServeConfig, listeners: Listeners, generation: int, cwd: str | None
    ) -> ForkServer | None:
        try:
            server = await ForkServer.start(config, listeners, generation, cwd)
        except (OSError, ForkServerError) as error:
            log.warning(
                "Fork server of generation %d unavailable (%s): its workers start from fresh "
                "interpreters",
                generation,
                error,
            )
            return None
        log.info("Fork server %d of generation %d ready", server.process.pid, generation)
        return server

    def retire(self, keep: set[int]) -> None:
        """Close the fork servers of every generation but those in `keep`."""
        for generation, task in list(self._servers.items()):
            if generation not in keep and task.done():
                del self._servers[generation]
                self._close_later(task)

    def _close_later(self, task: asyncio.Task[ForkServer | None]) -> None:
        """Close the fork server `task` started, unless another generation still uses it."""
        server = _server(task)
        if server is None or any(_server(other) is server for other in self._servers.values()):
            return
        closing = asyncio.create_task(server.close())
        self._closing[closing] = server
        closing.add_done_callback(self._closing.pop)

    async def close(self) -> None:
        """Close every fork server."""
        tasks = list(self._servers.values())
        self._servers.clear()
        for task in tasks:
            task.cancel()
        servers = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(server.close() for server in servers if isinstance(server, ForkServer)),
            *self._closing,
        )
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)


async def _kill_stray(pid: int, fork_server: int) -> None:
    """Kill and reap worker `pid`, forked by a retired fork server, if it is still adopted here
    (the reaper may have reaped it, and its pid gone to another process)."""
    if (status := procfs.status(pid)) is None or status.parent != os.getpid():
        return  # a child of this process stays one until reaped here
    stray = ForkedProcess(pid)
    stray.kill()
    await stray.wait()
    log.warning("Killed worker %d, forked by fork server %d after it was retired", pid, fork_server)


def _code(config: ServeConfig, cwd: str | None) -> tuple[str, str, bool, str | None]:
    return config.app, config.worker_class, config.preload_app, cwd


def _server(task: asyncio.Task[ForkServer | None]) -> ForkServer | None:
    """The fork server `task` started, once it has."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _gone(task: asyncio.Task[ForkServer | None]) -> bool:
    """Whether a started fork server failed, was retired or has exited (another is started
    then)."""
    if task.cancelled() or task.exception() is not None:
        return True
    server = task.result()
    return server is not None and not server.usable
