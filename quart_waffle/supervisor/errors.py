"""The ways starting a worker or rolling a reload can fail."""

from __future__ import annotations


class ServeError(Exception):
    """`serve` cannot start (address in use, a live pid file, ...); the message is one line."""


class WorkerFailed(Exception):
    """A new worker did not become ready: import error, crash, failed startup or timeout.

    `reason` is one line; `details` is what the worker reported beyond it (its traceback).
    """

    def __init__(self, pid: int, reason: str, details: str = "") -> None:
        super().__init__(f"worker {pid} failed: {reason}")
        self.pid = pid
        self.reason = reason
        self.details = details


class ReloadFailed(Exception):
    """A rolling reload stopped before replacing every worker; the others keep serving."""
