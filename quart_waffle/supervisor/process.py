"""One worker process as the supervisor sees it: spawn, wait until ready, drain, kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .config import ServeConfig
from .errors import WorkerFailed
from .listeners import Listeners
from .scheduling import GENTLE_START, end_gentle_start, start_gently
from .worker import BEAT, DRAIN, FAILED, GENERATION, READY, RECYCLE, RESTART, WorkerSpec

# A draining worker also runs lifespan shutdown and leaves the interpreter after its graceful
# timeout; past this margin it is killed.
EXIT_MARGIN = 1.0
# A worker that failed to start gets this long to send its traceback, finish writing its stderr
# and exit before it is killed.
FAILED_EXIT_TIMEOUT = 5.0
MAX_DETAILS = 256 * 1024


class ProcessHandle(Protocol):
    """A child process as `asyncio.subprocess.Process` shows it."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


Fork = Callable[[WorkerSpec, socket.socket], Awaitable[ProcessHandle]]
"""Starts a worker process from its spec and its end of the channel (a fork server's)."""


class WorkerProcess:
    """A worker started from a fresh interpreter, or forked by a fresh fork server, so it
    imports the app's current code."""

    def __init__(
        self,
        process: ProcessHandle,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        generation: int,
    ) -> None:
        self.process = process
        self.generation = generation
        self.started_at = time.monotonic()
        self._heard_at = self.started_at
        self.requests: int | None = None  # as of the last heartbeat
        self._reader = reader
        self._writer = writer
        self._listener: asyncio.Task[None] | None = None
        self._recycle: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._gentle = asyncio.get_running_loop().call_later(GENTLE_START, self._end_gentle_start)
        self._restarts: asyncio.Queue[str | None] = asyncio.Queue()

    @classmethod
    async def spawn(
        cls,
        config: ServeConfig,
        listeners: Listeners,
        generation: int,
        cwd: str | None = None,
        fork: Fork | None = None,
    ) -> WorkerProcess:
        """Start a worker of `generation`, in the directory `cwd` (the supervisor's by
        default), where it imports the app from; forked by `fork` if given, else from a fresh
        interpreter."""
        parent, child = socket.socketpair()
        secure = [sock.fileno() for sock in listeners.secure]
        insecure = [sock.fileno() for sock in listeners.insecure]
        spec = WorkerSpec(
            app=config.app,
            channel_fd=child.fileno(),
            secure_fds=secure,
            insecure_fds=insecure,
            hypercorn=config.hypercorn_settings(secure, insecure),
            heartbeat=config.heartbeat_interval,
            max_requests=config.max_requests
            and config.max_requests + random.randint(0, config.max_requests_jitter),
            worker_class=config.worker_class,
            generation=generation,
            native_accept=config.native_accept,
        )
        try:
            process: ProcessHandle
            if fork is not None:
                process = await fork(spec, child)
            else:
                process = await start_interpreter(
                    "quart_waffle.supervisor.worker",
                    "main",
                    spec.to_json(),
                    generation,
                    cwd,
                    (child.fileno(), *secure, *insecure),
                )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        start_gently(process.pid)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return cls(process, reader, writer, generation)

    @property
    def pid(self) -> int:
        return self.process.pid

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def silent_for(self) -> float:
        """Seconds since the worker's event loop last spoke (its ``ready`` or a heartbeat)."""
        return time.monotonic() - self._heard_at

    async def wait_ready(self, startup_timeout: float) -> None:
        """Return once the worker accepts, or kill it and raise `WorkerFailed`."""
        try:
            async with asyncio.timeout(startup_timeout):
                line = (await self._reader.readline()).decode(errors="replace").strip()
        except TimeoutError:
            await self.kill()
            raise WorkerFailed(self.pid, f"not ready after {startup_timeout:g} s") from None
        self._end_gentle_start()
        if line == READY:
            self._heard_at = time.monotonic()
            self._listener = asyncio.create_task(self._listen())
            return
        details = ""
        try:
            async with asyncio.timeout(FAILED_EXIT_TIMEOUT):
                if line.startswith(FAILED):
                    details = await self._read_details()
                await self.process.wait()
        except TimeoutError:
            pass
        await self.kill()
        if line.startswith(FAILED):
            raise WorkerFailed(self.pid, line.removeprefix(FAILED).strip(), details)
        raise WorkerFailed(self.pid, f"exited with code {self.process.returncode}")

    def _end_gentle_start(self) -> None:
        """Give the worker the normal scheduling policy again (see `scheduling`)."""
        self._gentle.cancel()
        if self.process.returncode is None:
            end_gentle_start(self.pid)

    async def wait_recycle(self) -> bool:
        """True once the worker asks to be replaced; False if it goes first."""
        return await asyncio.shield(self._recycle)

    async def wait_restart(self) -> str | None:
        """The reason of the worker's next request for a rolling reload; None once it is gone."""
        reason = await self._restarts.get()
        if reason is None:
            self._restarts.put_nowait(None)  # every later call answers None too
        return reason

    async def _listen(self) -> None:
        """Note every heartbeat of a serving worker, its request to be replaced and its
        requests for a reload, until its channel closes."""
        try:
            with contextlib.suppress(ConnectionError):
                while line := await self._reader.readline():
                    self._heard_at = time.monotonic()
                    message, _, reason = line.decode(errors="replace").strip().partition(" ")
                    if message == BEAT and reason.isdigit():
                        self.requests = int(reason)
                    elif message == RECYCLE and not self._recycle.done():
                        self._recycle.set_result(True)
                    elif message == RESTART:
                        self._restarts.put_nowait(reason[:200] or "no reason given")
        finally:
            if not self._recycle.done():
                self._recycle.set_result(False)
            self._restarts.put_nowait(None)

    async def _read_details(self) -> str:
        """What a failed worker sends after its ``failed`` line, up to end of file."""
        chunks: list[bytes] = []
        size = 0
        while size < MAX_DETAILS and (chunk := await self._reader.read(MAX_DETAILS - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode(errors="replace").rstrip()

    async def wait_exit(self) -> int:
        code = await self.process.wait()
        if self._listener is not None:
            self._listener.cancel()
        self._writer.close()
        return code

    async def stop(self, graceful_timeout: float) -> int | None:
        """Drain the worker; kill it if it has not exited in time. Returns its exit code, or
        None when it had to be killed."""
        with contextlib.suppress(ConnectionError):
            self._writer.write(f"{DRAIN}\n".encode())
            await self._writer.drain()
        try:
            async with asyncio.timeout(graceful_timeout + EXIT_MARGIN):
                return await self.wait_exit()
        except TimeoutError:
            await self.kill()
            return None

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.wait_exit()


async def start_interpreter(
    module: str,
    function: str,
    spec: str,
    generation: int,
    cwd: str | None,
    pass_fds: tuple[int, ...],
) -> asyncio.subprocess.Process:
    """A fresh interpreter running `module`.`function`() with `spec` (JSON) as its argument,
    in `cwd`, its environment naming `generation`, inheriting `pass_fds`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"from {module} import {function}; {function}()",
        spec,
        stdin=subprocess.DEVNULL,
        env={**os.environ, GENERATION: str(generation)},
        cwd=cwd,
        pass_fds=pass_fds,
    )
