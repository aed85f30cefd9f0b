"""A private ``redis-server`` on a free port, to stop and restart at will (never the shared one)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.lifecycle import StartStopABC
from harness.ports import free_port, wait_listening
from harness.processes import ProcessGroup


class RedisServer(StartStopABC):
    """``redis-server`` on 127.0.0.1, no persistence; ``url`` stays the same across restarts.
    ``args`` are more options, e.g. ``["--replicaof", "127.0.0.1", "6380"]``."""

    def __init__(self, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.args = list(args)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: ProcessGroup | None = None
        self._log = Path(tempfile.gettempdir()) / f"waffle-redis-{self.port}.log"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running server process, None while stopped."""
        return None if self._server is None else self._server.process

    async def start(self, within: float = 10.0) -> None:
        """Start (again, on the same port) and wait until it accepts."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", *self.args]
        self._server = ProcessGroup(argv, env={}, log=self._log, cwd=Path(tempfile.gettempdir()))
        self._server.start()
        try:
            await wait_listening(self.port, within, self._server.exited)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Kill it (SIGKILL, no grace: an outage, not a goodbye)."""
        if self._server is not None:
            await asyncio.to_thread(self._server.stop, None)
        self._server = None
