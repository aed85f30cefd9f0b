"""Run `quart-waffle serve` as a real process group (:class:`harness.ProcessGroup`), and
judge what it logged and what its workers answered."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.http import HttpError, http_request
from harness.load import Sample
from harness.processes import ROOT, ProcessGroup
from quart_waffle.supervisor.config import control_socket_beside
from quart_waffle.supervisor.control import request_reload, request_status
from quart_waffle.supervisor.errors import ReloadFailed

COMMAND = [str(Path(sys.executable).with_name("quart-waffle"))]
START_TIMEOUT = 60.0
RELOAD_TIMEOUT = 120.0


@dataclass(frozen=True)
class Reloaded:
    returncode: int
    output: str


class ServerProcess:
    """`quart-waffle serve` in its own session, logging to a file, on a free loopback port."""

    def __init__(
        self,
        directory: Path,
        app: str | None,
        args: Sequence[str],
        env: dict[str, str],
        *,
        launcher: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
        bind: Sequence[str] = ("-b", "127.0.0.1:0"),
        cwd: Path = ROOT,
        log_file: Path | None = None,
    ) -> None:
        """`app` None: the config file in `args` names it; `launcher` runs before the command
        (it must exec it); `bind` replaced by nothing leaves the address to a config file;
        `cwd` is where the supervisor runs (and its workers import the app from);
        `log_file`: the supervisor logs there (its ``--error-logfile``), not to its output."""
        self.log_path = directory / "serve.log"
        self.pid_file = str(directory / "serve.pid")
        self.log_path.write_bytes(b"")  # this server's lines only
        command = [
            *launcher,
            *COMMAND,
            "serve",
            *([app] if app else []),
            *bind,
            "--pid-file",
            self.pid_file,
            *args,
        ]
        self.group = ProcessGroup(
            command, env={**os.environ, **env}, log=self.log_path, cwd=cwd, pass_fds=pass_fds
        )
        self.group.start()
        if log_file is not None:
            self.log_path = log_file
        match = self.wait_for_log(r"Listening on 127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))
        self.wait_for_log(r"Serving with workers")

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The supervisor."""
        return self.group.process

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:  # a log file not created yet, or just moved away
            return ""

    def started_pids(self) -> set[int]:
        """The workers that have logged they are running, so far."""
        return {int(pid) for pid in re.findall(r"\[(\d+)\] \[INFO\] Running on", self.log())}

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.log()):
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log after {timeout} s:\n{self.log()}")

    async def reload(self, *options: str, via_pid_file: bool = False) -> Reloaded:
        """`quart-waffle reload` with `options`, at the control socket (or the pid file)."""
        if via_pid_file:
            target = ["--pid-file", self.pid_file]
        else:
            target = ["--control-socket", control_socket_beside(self.pid_file)]
        process = await asyncio.create_subprocess_exec(
            *COMMAND,
            "reload",
            *target,
            *options,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(RELOAD_TIMEOUT):
            output, _ = await process.communicate()
        assert process.returncode is not None
        return Reloaded(process.returncode, output.decode())

    async def request_reload(self) -> Reloaded:
        """Ask for a reload over the control socket from this process, as `reload` does but
        without starting a command: the request arrives within milliseconds."""
        out = io.StringIO()
        path = control_socket_beside(self.pid_file)
        try:
            summary = await asyncio.to_thread(request_reload, path, RELOAD_TIMEOUT, out)
        except ReloadFailed as error:
            return Reloaded(1, f"{out.getvalue()}{error}\n")
        return Reloaded(0, f"{out.getvalue()}{summary}\n")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor and wait for it to exit."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        """Stop the supervisor, kill whatever is left of its process group."""
        self.group.stop(20)
        Path(control_socket_beside(self.pid_file)).unlink(missing_ok=True)


def quart_waffle(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``quart-waffle *args`` run from the repository root: its exit status and text output."""
    return subprocess.run(
        [*COMMAND, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def status(server: ServerProcess) -> dict[str, Any]:
    """The running supervisor's status, over its control socket."""
    return request_status(control_socket_beside(server.pid_file), 10)


async def whoami(port: int) -> dict[str, Any]:
    """``GET /whoami`` on a new connection, so any worker may take it: the JSON body of a 200."""
    status, body = await http_request(
        port, "GET", "/whoami", headers={"Connection": "close"}, within=30
    )
    if status != 200:
        raise HttpError(f"GET /whoami: {status} {body[:200]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def accepting_floor(samples: list[Sample], start: float, end: float) -> int:
    """A lower bound of how many workers were accepting at every moment of ``[start, end]``.

    A worker stops accepting once, for good, so one that handled a fresh connection at `a` (by
    its own clock, else when the answer arrived) and answered another one started at `b` was
    accepting throughout ``[a, b]``. Only responses on new connections count: a draining worker
    still answers on connections it already holds.
    """
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for sample in samples:
        if sample.fresh:
            accepted_by = sample.finished if sample.handled is None else sample.handled
            first[sample.pid] = min(first.get(sample.pid, accepted_by), accepted_by)
            last[sample.pid] = max(last.get(sample.pid, sample.started), sample.started)
    spans = [(first[pid], last[pid]) for pid in first if first[pid] <= last[pid]]
    moments = [start, end, *(t for span in spans for t in span if start <= t <= end)]
    # Evaluate just inside every edge; the coverage only changes at edges.
    probes = [t + d for t in moments for d in (-1e-6, 1e-6) if start <= t + d <= end]
    return min(sum(a <= t <= b for a, b in spans) for t in probes)
