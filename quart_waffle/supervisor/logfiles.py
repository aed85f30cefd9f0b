"""Reopening log files after logrotate moved them (``SIGUSR1``), in the supervisor and in
every worker: each `logging.FileHandler` of the process opens its path anew."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType


def reopen_log_files() -> list[str]:
    """Reopen the file of every `logging.FileHandler` of this process; their paths."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    reopened: list[str] = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler) and handler.stream is not None:
                with _locked(handler):
                    handler.stream.close()
                    handler.stream = handler._open()
                reopened.append(handler.baseFilename)
    return reopened


class _locked:
    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def __enter__(self) -> None:
        self.handler.acquire()

    def __exit__(self, *_: object) -> None:
        self.handler.release()


def reopen_on_usr1() -> None:
    """Reopen the log files on ``SIGUSR1``, from the event loop when one runs (never in the
    middle of a write), else at once. Install it first thing: ``SIGUSR1`` kills a process that
    does not handle it."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        try:
            asyncio.get_running_loop().call_soon_threadsafe(reopen_log_files)
        except RuntimeError:
            reopen_log_files()

    signal.signal(signal.SIGUSR1, handle)
