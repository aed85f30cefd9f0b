"""The file channel: one small file per host holds the latest hint.

The notifier writes the payload to a temporary file and renames it over the
watcher file, so a reader never sees half a hint. Listeners stat the file
every ``watch_interval`` and read it when its (mtime, size, inode) signature
changes; the notifier stamps the mtime with nanosecond wall time, and the
listener compares the content it reads, so two updates inside one filesystem
timestamp tick are never confused. Every change of the content is reported,
whatever it says: the runner decides. Stat and read of a tiny local file take
microseconds, so they run directly in the event loop: no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from .base import ChannelLostError, ListenerABC, NotifierABC
from .registry import ChannelKind, ChannelOptions

Signature = tuple[int, int, int, int]


def _read(path: str) -> tuple[Signature, bytes]:
    """The file's signature and content, read through one descriptor so
    that both describe the same file even while it is being replaced."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        stat = os.fstat(descriptor)
        content = os.read(descriptor, 4096)
    finally:
        os.close(descriptor)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev), content


class FileListener(ListenerABC):
    """Watches the file, for the workers of one host.

    Arguments:
        path: The watcher file (``WAFFLE_WATCHER_FILE``), created with its
            directory if missing.
        interval: Seconds between two stats (``WAFFLE_WATCH_INTERVAL``).
    """

    name = "file"

    def __init__(self, path: str, interval: float) -> None:
        self.path = os.path.abspath(path)
        self.interval = interval
        self._signature: Signature | None = None
        self._content: bytes | None = None

    async def connect(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            self._signature, self._content = _read(self.path)
        except FileNotFoundError:
            raise ChannelLostError(f"watcher file {self.path} was deleted") from None

    async def wait(self, max_wait: float) -> list[bytes]:
        if self._signature is None:
            raise ChannelLostError("file channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            content = self._poll()
            if content is not None:
                return [content]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(self.interval, remaining))

    def _poll(self) -> bytes | None:
        """The file's content if it changed since the last poll."""
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev) == self._signature:
                return None
            signature, content = _read(self.path)
        except FileNotFoundError:
            raise ChannelLostError(f"watcher file {self.path} was deleted") from None
        except OSError as error:
            raise ChannelLostError(f"watcher file {self.path} is unreadable: {error}") from error
        self._signature = signature
        if content == self._content:
            return None
        self._content = content
        return content

    async def close(self) -> None:
        self._signature = None
        self._content = None


class FileNotifier(NotifierABC):
    """Writes the file, for the workers of one host.

    Arguments:
        path: The watcher file; its directory is created if missing.
    """

    name = "file"

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._name = secrets.token_hex(8)

    async def send(self, payload: bytes) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            stat: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        temporary = f"{self.path}.{self._name}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(descriptor, payload)
        finally:
            os.close(descriptor)
        stamp = time.time_ns()
        if stat is not None:
            stamp = max(stamp, stat.st_mtime_ns + 1)
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, self.path)

    async def close(self) -> None:
        return None


def _listener(options: ChannelOptions, _engine: AsyncEngine | None) -> FileListener:
    return FileListener(options.watcher_file, options.watch_interval)


def _notifier(options: ChannelOptions, _engine: AsyncEngine | None) -> FileNotifier:
    return FileNotifier(options.watcher_file)


KIND = ChannelKind(listener=_listener, notifier=_notifier)
