"""A command in its own session, so that it and every process it starts are stopped as one
group: SIGTERM to the leader (a server then stops its workers gracefully), SIGKILL to the
group after a grace period and for anything left behind."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_running: dict[int, ProcessGroup] = {}


class ProcessGroup:
    """``argv`` in a new session, output (stdout and stderr) appended to ``log``.

    Arguments:
        argv: The command.
        env: The whole environment of the command.
        log: The file receiving its output (see :meth:`output`).
        cwd: Its working directory.
        pass_fds: Descriptors it inherits (e.g. a listening socket).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path = ROOT,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self.pass_fds,
            )
        _running[self._process.pid] = self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.argv[0]} was not started")
        return self._process

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the process group's id."""
        return self.process.pid

    def exited(self) -> str | None:
        """ "exited with N" and the log's tail once the leader has exited, else None."""
        if self.process.poll() is None:
            return None
        return f"{self.argv[0]} exited with {self.process.returncode}:\n{self.output()}"

    def output(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its output."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float | None = 10.0) -> int:
        """Stop gracefully, then by force after ``grace`` seconds (None: by force at once);
        the leader's exit status."""
        process = self.process
        _running.pop(process.pid, None)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a paused worker could not stop
        if process.poll() is None and grace is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers that outlived their leader
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


@atexit.register
def _stop_everything() -> None:
    for group in list(_running.values()):
        group.stop(5.0)
