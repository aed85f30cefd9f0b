"""``hypercorn -w N`` serving an app that reports its pid, revision and settings at
``GET /whoami`` (``examples.app:app``, ``tests.sync_app:app``), on a free port, and polling
every worker until it serves what is expected, against a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.http import http_request
from harness.lifecycle import StartStopABC
from harness.ports import free_port, wait_listening
from harness.processes import ROOT, ProcessGroup

HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))

WhoAmI = dict[str, Any]
"""A worker's ``GET /whoami`` body: ``{"pid", "revision", "settings"}``."""


class Deployment(StartStopABC):
    """``hypercorn -w workers app`` on a free port, in its own process group.

    Arguments:
        env: Extra environment, e.g. ``WAFFLE_DATABASE_URL``; the caller's ``WAFFLE_*``
            variables are not passed on.
        log: File receiving the server's output (see :meth:`log_tail`).
        workers: Number of hypercorn worker processes.
        app: The ASGI app to serve, imported from the checkout.
        args: More hypercorn options, e.g. ``["--keep-alive", "600"]``.
        startup_timeout: Seconds allowed until the port accepts.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        workers: int = 4,
        app: str = "examples.app:app",
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.port = free_port()
        environment = {key: value for key, value in os.environ.items() if key[:7] != "WAFFLE_"}
        environment.update(env)
        environment["PYTHONPATH"] = str(ROOT)
        argv = [HYPERCORN, "-w", str(workers), "-b", f"127.0.0.1:{self.port}"]
        argv += ["--graceful-timeout", "5", *args, app]
        self.server = ProcessGroup(argv, env=environment, log=log)

    async def start(self) -> None:
        """Start and wait until the port accepts connections."""
        self.server.start()
        try:
            await wait_listening(self.port, self.startup_timeout, self.server.exited)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 10.0) -> int:
        """Stop gracefully (after_serving runs in every worker); the server's exit status."""
        return await asyncio.to_thread(self.server.stop, grace)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for failure messages."""
        return self.server.output(lines)

    async def whoami(self) -> WhoAmI:
        """One ``GET /whoami`` on a new connection; raise unless it is a 200."""
        status, body = await http_request(self.port, "GET", "/whoami")
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
        self, check: Callable[[WhoAmI], bool], pids: set[int], within: float = 10.0
    ) -> dict[int, WhoAmI]:
        """Poll until the latest answer of every worker in ``pids`` passes ``check``; return
        those answers. Only answers received after the call count. Raise TimeoutError naming
        the workers that did not, after ``within`` seconds."""
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
