"""Real processes for tests and benchmarks: ``hypercorn -w N examples.app:app``
on a free loopback port, a private ``redis-server``, and polling every worker
of a deployment until it serves what we expect, against a deadline.

Example::

    async with Deployment(env={"WAFFLE_WATCHTYPE": "redis", ...}, log=tmp_path / "a.log") as app:
        pids = await app.worker_pids()
        ...
        seen = await app.until_all_serve(lambda body: body["revision"] >= revision, pids)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))

WhoAmI = dict[str, Any]
"""A worker's ``GET /whoami`` body: ``{"pid", "revision", "settings"}``."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def http_get(port: int, path: str, within: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on 127.0.0.1:``port`` on a new connection, answered
    ``within`` seconds: (status, body)."""
    return await http_request(port, "GET", path, within=within)


async def http_request(
    port: int, method: str, path: str, body: Any = None, within: float = 5.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 request (``body`` sent as JSON) on a new connection to
    127.0.0.1:``port``, answered ``within`` seconds: (status, body)."""
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head_in, _, answer = response.partition(b"\r\n\r\n")
    status = int(head_in.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_in.lower():
        answer = _unchunk(answer)
    return status, answer


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


async def wait_for_port(port: int, deadline: float, process: asyncio.subprocess.Process) -> None:
    """Until something accepts on ``port``; fail if ``process`` exits or time runs out."""
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"nothing listening on port {port}")


async def _terminate(process: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the process (a hypercorn parent then stops its workers
    gracefully), SIGKILL its whole group after ``grace`` seconds; return the status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)  # a paused worker could not stop
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode is not None
    return process.returncode


class Deployment:
    """``hypercorn -w workers examples.app:app`` (or ``app``) on a free port.

    Arguments:
        env: Extra environment, e.g. ``WAFFLE_DATABASE_URL``, ``WAFFLE_WATCHTYPE``.
        log: File receiving the server's output (shown by :meth:`log_tail`).
        workers: Number of hypercorn worker processes.
        app: The ASGI app to serve.
        startup_timeout: Seconds allowed until every worker answers.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        workers: int = 4,
        app: str = "examples.app:app",
        startup_timeout: float = 30.0,
    ) -> None:
        self.env = dict(env)
        self.log = log
        self.workers = workers
        self.app = app
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.requests = 0

    async def start(self) -> None:
        """Start and wait until the port accepts connections."""
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("WAFFLE_")
        }
        environment.update(self.env)
        environment["PYTHONPATH"] = str(ROOT)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                HYPERCORN,
                "-w",
                str(self.workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                "5",
                self.app,
                cwd=ROOT,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            await wait_for_port(self.port, time.monotonic() + self.startup_timeout, self.process)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 10.0) -> int:
        """Stop gracefully (after_serving runs in every worker); return the status."""
        if self.process is None:
            return 0
        status = await _terminate(self.process, grace)
        return status

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for failure messages."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def whoami(self) -> WhoAmI:
        """One ``GET /whoami``; raise unless it is a 200 (reads must never fail)."""
        status, body = await http_get(self.port, "/whoami")
        self.requests += 1
        if status != 200:
            raise AssertionError(f"GET /whoami answered {status}: {body[:200]!r}")
        answer: WhoAmI = json.loads(body)
        return answer

    async def sample(self, concurrency: int = 12) -> list[WhoAmI]:
        """``concurrency`` simultaneous requests, so that several workers answer."""
        return list(await asyncio.gather(*(self.whoami() for _ in range(concurrency))))

    async def worker_pids(self, within: float = 30.0) -> set[int]:
        """The pid of every worker, gathered until all ``workers`` have answered."""
        deadline = time.monotonic() + within
        pids: set[int] = set()
        while len(pids) < self.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"saw only workers {sorted(pids)} of {self.workers}\n{self.log_tail()}"
                )
            try:
                pids.update(answer["pid"] for answer in await self.sample())
            except (OSError, AssertionError, TimeoutError):
                await asyncio.sleep(0.1)  # a worker still starting
        return pids

    async def until_all_serve(
        self,
        check: Callable[[WhoAmI], bool],
        pids: set[int],
        within: float = 10.0,
    ) -> dict[int, WhoAmI]:
        """Poll until the latest answer of every worker in ``pids`` passes
        ``check``; return those answers. Only answers received after the call
        count. Raise TimeoutError naming the workers that did not ``within``
        seconds."""
        deadline = time.monotonic() + within
        latest: dict[int, WhoAmI] = {}
        while True:
            for answer in await self.sample():
                latest[answer["pid"]] = answer
            lagging = {pid for pid in pids if pid not in latest or not check(latest[pid])}
            if not lagging:
                return latest
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workers {sorted(lagging)} did not converge within {within} s: "
                    f"{[latest.get(pid) for pid in lagging]}\n{self.log_tail()}"
                )
            await asyncio.sleep(0.005)


class RedisServer:
    """A private ``redis-server`` on a free port, to stop and restart at will."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 10.0) -> None:
        """Start (again, on the same port) and wait until it accepts."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            await wait_for_port(self.port, time.monotonic() + within, self.process)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Kill it (SIGKILL: an outage, not a goodbye)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
