"""The pid file: claimed without following links, refused while another supervisor lives."""

from __future__ import annotations

import contextlib
import errno
import os

from .errors import ServeError

MAX_PID_FILE = 32


def read_pid(path: str) -> int:
    """The pid written in the pid file at `path`; never follows a symbolic link.

    Raises `OSError` when the file cannot be opened (``ELOOP`` for a link) and `ValueError`
    when it does not hold a pid.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        text = os.read(fd, MAX_PID_FILE).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**31):
        raise ValueError(f"{path} does not hold a process id")
    return int(text)


def claim(path: str) -> None:
    """Create the pid file at `path` with this process's pid.

    A file left by a supervisor that is gone is replaced; a file naming a live process, a
    symbolic link or anything that cannot be read as a pid file stops `serve` with a
    `ServeError`.
    """
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            _remove_stale(path)
            continue
        except OSError as error:
            raise ServeError(f"cannot create the pid file {path}: {error.strerror}") from None
        with os.fdopen(fd, "w") as file:
            file.write(f"{os.getpid()}\n")
        return
    raise ServeError(f"pid file {path} keeps reappearing: is another serve starting?")


def release(path: str) -> None:
    """Remove the pid file at `path` if it still names this process."""
    with contextlib.suppress(OSError, ValueError):
        if read_pid(path) == os.getpid():
            os.unlink(path)


def _remove_stale(path: str) -> None:
    try:
        pid = read_pid(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ServeError(f"pid file {path} is a symbolic link: refusing to follow it") from None
        if error.errno == errno.ENOENT:
            return  # gone meanwhile
        raise ServeError(f"cannot read the pid file {path}: {error.strerror}") from None
    except ValueError:
        raise ServeError(f"{path} exists and is not a pid file: remove it") from None
    if _alive(pid):
        raise ServeError(
            f"pid file {path}: process {pid} is running (another serve?);"
            " stop it or remove the file"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
