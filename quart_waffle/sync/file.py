"""The file channel: one small file per host holds the latest hint.

The notifier writes the payload to a new temporary file beside the watcher
file (a random name, created exclusively, never through a symbolic link) and
renames it over the watcher file, so a reader never sees half a hint.
Listeners stat the file every ``watch_interval`` and read it when its (mtime,
size, inode) signature changes; the notifier stamps the mtime with nanosecond
wall time, and the listener compares the content it reads, so two updates
inside one filesystem timestamp tick are never confused. Every change of the
content is reported, whatever it says: the runner decides.

Only a regular file is read: a symbolic link, a FIFO or a directory at the
watcher path is refused as a lost channel, never followed nor opened for a
blocking read. Every file operation runs on the channel's own thread with a
time limit, so a stalled filesystem (a hung network mount) delays no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from .base import ChannelLostError, ListenerABC, NotifierABC
from .registry import ChannelKind, ChannelOptions

T = TypeVar("T")
Signature = tuple[int, int, int, int]

MAX_PAYLOAD = 64 * 1024
"""Bytes the notifier writes at most (a longer change goes as a bare hint)."""
READ_LIMIT = MAX_PAYLOAD + 1
"""Bytes read from the watcher file: one more than a message may have, so a
longer file is never taken for a message."""

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


class FileThread:
    """Runs file operations on a private thread, one at a time, each within
    ``timeout`` seconds. A hung operation holds this thread only (not the
    event loop, not the loop's shared executor), and while it hangs every
    further operation fails at once instead of queueing behind it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[Any] | None = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the thread; :class:`ChannelLostError` if it
        takes longer than the time limit or an earlier call still runs."""
        if self._running is not None and not self._running.done():
            raise ChannelLostError(f"a file operation is hung (over {self.timeout} s)")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="quart-waffle-file")
        self._running = self._executor.submit(function, *args)
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.wrap_future(self._running)
        except TimeoutError:
            raise ChannelLostError(f"a file operation took over {self.timeout} s") from None

    def close(self) -> None:
        """Let the thread end, unless it is stuck (then it is kept, so that
        no second thread gets stuck behind the same mount)."""
        if self._executor is not None and (self._running is None or self._running.done()):
            self._executor.shutdown(wait=False)
            self._executor = None


def _require_regular(path: str, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = _KINDS.get(stat.S_IFMT(status.st_mode), "not a regular file")
        raise ChannelLostError(f"refused {kind} at {path}: only a regular file is read")


def _signature(status: os.stat_result) -> Signature:
    return status.st_mtime_ns, status.st_size, status.st_ino, status.st_dev


def _read(path: str) -> tuple[Signature, bytes]:
    """The file's signature and content, through one descriptor opened
    without following a link and without waiting for a FIFO's writer."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError:
        raise ChannelLostError(f"watcher file {path} was deleted") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ChannelLostError(f"refused a symbolic link at {path}: never followed") from None
        raise ChannelLostError(f"watcher file {path} is unreadable: {error}") from error
    try:
        status = os.fstat(descriptor)
        _require_regular(path, status)
        return _signature(status), os.read(descriptor, READ_LIMIT)
    finally:
        os.close(descriptor)


def _poll(path: str, known: Signature | None) -> tuple[Signature, bytes] | None:
    """The file's signature and content if its signature is no longer ``known``."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        raise ChannelLostError(f"watcher file {path} was deleted") from None
    except OSError as error:
        raise ChannelLostError(f"watcher file {path} is unreadable: {error}") from error
    _require_regular(path, status)
    return None if _signature(status) == known else _read(path)


def _open_watcher(path: str) -> tuple[Signature, bytes]:
    """Create the directory and an empty file where missing, then read it."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644))
    except OSError as error:
        raise ChannelLostError(f"cannot create watcher file {path}: {error}") from error
    return _read(path)


def _replace(path: str, payload: bytes) -> None:
    """Write ``payload`` to a new temporary file and rename it over ``path``."""
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    try:
        previous: int | None = os.lstat(path).st_mtime_ns
    except FileNotFoundError:
        previous = None
    temporary, descriptor = _create_temporary(directory, name)
    try:
        try:
            os.write(descriptor, payload)
            stamp = time.time_ns() if previous is None else max(time.time_ns(), previous + 1)
            os.utime(descriptor, ns=(stamp, stamp))
        finally:
            os.close(descriptor)
        os.replace(temporary, path)  # replaces a link itself, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _create_temporary(directory: str, name: str) -> tuple[str, int]:
    """A new file with an unguessable name: O_EXCL never opens what is there."""
    for _ in range(4):
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        with contextlib.suppress(FileExistsError):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
            return temporary, os.open(temporary, flags, 0o644)
    raise FileExistsError(errno.EEXIST, "no free temporary name", directory)


class FileListener(ListenerABC):
    """Watches the file, for the workers of one host.

    Arguments:
        path: The watcher file (``WAFFLE_WATCHER_FILE``), created with its
            directory if missing.
        interval: Seconds between two stats (``WAFFLE_WATCH_INTERVAL``).
        timeout: Seconds one file operation may take before the channel
            counts as lost.
    """

    name = "file"

    def __init__(self, path: str, interval: float, *, timeout: float = 5.0) -> None:
        self.path = os.path.abspath(path)
        self.interval = interval
        self._thread = FileThread(timeout)
        self._signature: Signature | None = None
        self._content: bytes | None = None

    async def connect(self) -> None:
        self._signature, self._content = await self._thread.run(_open_watcher, self.path)

    async def wait(self, max_wait: float) -> list[bytes]:
        if self._signature is None:
            raise ChannelLostError("file channel is not connected")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            changed = await self._thread.run(_poll, self.path, self._signature)
            if changed is not None:
                self._signature, content = changed
                if content != self._content:
                    self._content = content
                    return [content]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(self.interval, remaining))

    async def close(self) -> None:
        self._signature = None
        self._content = None
        self._thread.close()


class FileNotifier(NotifierABC):
    """Writes the file, for the workers of one host.

    Arguments:
        path: The watcher file; its directory is created if missing.
        timeout: Seconds one file operation may take.
    """

    name = "file"
    max_payload = MAX_PAYLOAD

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self.path = os.path.abspath(path)
        self._thread = FileThread(timeout)

    async def send(self, payload: bytes) -> None:
        await self._thread.run(_replace, self.path, payload)

    async def head(self) -> bytes | None:
        """The watcher file's first line: it holds the last message."""
        _signature, content = await self._thread.run(_read, self.path)
        return content.partition(b"\n")[0]

    async def close(self) -> None:
        self._thread.close()


def _listener(options: ChannelOptions, _engine: AsyncEngine | None) -> FileListener:
    return FileListener(options.watcher_file, options.watch_interval, timeout=options.timeout)


def _notifier(options: ChannelOptions, _engine: AsyncEngine | None) -> FileNotifier:
    return FileNotifier(options.watcher_file, timeout=options.timeout)


KIND = ChannelKind(listener=_listener, notifier=_notifier)
