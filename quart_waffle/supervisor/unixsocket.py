"""Unix socket paths: a socket is bound only where nothing lives, or a stale one of ours was."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from .errors import ServeError

MAX_UNIX_PATH = 107  # bytes of a unix socket path on Linux (sun_path, less its final NUL)
PROBE_TIMEOUT = 1.0


def check_length(path: str) -> None:
    """Refuse a path longer than a unix socket takes (`ValueError` saying so)."""
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH:
        raise ValueError(
            f"the path is too long for a unix socket ({size} bytes, at most {MAX_UNIX_PATH})"
        )


def clear_for_bind(path: str, label: str) -> None:
    """Make `path` free to bind a unix socket at, or stop `serve`.

    Nothing there, or a socket of this user that nobody listens on (left by a process that
    died, removed here), is fine. A path too long, anything that is not a socket (a symbolic
    link included), a socket of another user or one someone listens on raises `ServeError`
    with ``<label>: <reason>``.
    """
    try:
        check_length(path)
        existing = os.lstat(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        raise ServeError(f"{label}: {reason}") from None
    if not stat.S_ISSOCK(existing.st_mode):
        raise ServeError(f"{label}: exists and is not a socket: remove it")
    if existing.st_uid != os.geteuid():
        raise ServeError(
            f"{label}: belongs to uid {existing.st_uid}, not to this user: refusing it"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)  # a listener whose accept queue is full makes us wait
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: whoever listened is gone
            return
        except FileNotFoundError:
            return  # removed meanwhile
        except TimeoutError:
            pass  # someone listens, too busy to accept
        except OSError as error:
            raise ServeError(f"{label}: {error.strerror}") from None
    raise ServeError(f"{label}: address in use (another process listens on it)")
