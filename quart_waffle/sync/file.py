"""The file channel: one small file per host holds the latest revision hinted.

The notifier writes ``"<revision> <sender>"`` to a temporary file and renames
it over the watcher file, so a reader never sees half a hint. Watchers stat
the file every ``watch_interval`` and read it when its (mtime, size, inode)
signature changes; the notifier stamps the mtime with nanosecond wall time,
and the watcher compares the content it reads, so two updates inside one
filesystem timestamp tick are never confused. Stat and read of a tiny local
file take microseconds, so they run directly in the event loop: no thread.

Every hint that changes the file is reported, whatever its number: the
runner compares it with the revision the worker serves, so an older hint that
lands after a newer one (two notifiers racing) costs nothing, and a file left
by an earlier database, holding a revision higher than the store's, never
silences the channel. Only a missing, empty or unreadable file counts as a
lost channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from .base import ChannelLostError, SyncChannelABC, decode_hint, encode_hint

Signature = tuple[int, int, int, int]


class FileChannel(SyncChannelABC):
    """Hints through a watched file, for the workers of one host.

    Arguments:
        path: The watcher file (``WAFFLE_WATCHER_FILE``), created with its
            directory if missing.
        interval: Seconds between two stats (``WAFFLE_WATCH_INTERVAL``).
    """

    name = "file"

    def __init__(self, path: str, interval: float) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self.interval = interval
        self._signature: Signature | None = None
        self._content: bytes | None = None

    async def connect(self) -> None:
        self._create()
        try:
            self._signature, self._content = self._read()
        except FileNotFoundError:
            raise ChannelLostError(f"watcher file {self.path} was deleted") from None

    async def wait(self, max_wait: float) -> int | None:
        if self._signature is None:
            raise ChannelLostError("file channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            hinted = self._poll()
            remaining = deadline - loop.time()
            if hinted is not None or remaining <= 0:
                return hinted
            await asyncio.sleep(min(self.interval, remaining))

    async def notify(self, revision: int) -> None:
        try:
            self._write(revision)
        except FileNotFoundError:  # the directory went away: make it again
            self._create()
            self._write(revision)

    async def close(self) -> None:
        self._signature = None
        self._content = None

    def _create(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

    def _read(self) -> tuple[Signature, bytes]:
        """The file's signature and content, read through one descriptor so
        that both describe the same file even while it is being replaced."""
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            stat = os.fstat(descriptor)
            content = os.read(descriptor, 4096)
        finally:
            os.close(descriptor)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev), content

    def _poll(self) -> int | None:
        """The revision another worker hinted since the last poll, if any."""
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev) == self._signature:
                return None
            signature, content = self._read()
        except FileNotFoundError:
            raise ChannelLostError(f"watcher file {self.path} was deleted") from None
        except OSError as error:
            raise ChannelLostError(f"watcher file {self.path} is unreadable: {error}") from error
        self._signature = signature
        if content == self._content:
            return None
        self._content = content
        hint = decode_hint(content)
        if hint is None:
            # emptied, or not a hint: replaced by someone else, hints may be lost
            raise ChannelLostError(f"watcher file {self.path} was replaced")
        revision, sender = hint
        return None if sender == self.sender else revision

    def _write(self, revision: int) -> None:
        try:
            stat: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        temporary = f"{self.path}.{self.sender}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(descriptor, f"{encode_hint(revision, self.sender)}\n".encode())
        finally:
            os.close(descriptor)
        stamp = time.time_ns()
        if stat is not None:
            stamp = max(stamp, stat.st_mtime_ns + 1)
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, self.path)
