"""The options of `quart-waffle serve`, and the Hypercorn settings a worker derives from them."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .options import RANGES, out_of_range
from .reloader import check_available as check_reload_available
from .worker import UVLOOP_CLASSES, WORKER_CLASSES


def control_socket_beside(pid_file: str) -> str:
    """The control socket of a supervisor started with `pid_file` and no control socket."""
    return f"{pid_file}.sock"


@contextlib.contextmanager
def private_control_socket() -> Iterator[str]:
    """A control socket path no other user can take first, for a supervisor with no pid file.

    It is ``$XDG_RUNTIME_DIR/quart-waffle-<pid>.sock`` when that directory is this user's and
    closed to others, else ``control.sock`` in a fresh 0700 temporary directory, removed on exit.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _is_private_directory(runtime):
        yield os.path.join(runtime, f"quart-waffle-{os.getpid()}.sock")
        return
    directory = tempfile.mkdtemp(prefix="quart-waffle-")
    try:
        yield os.path.join(directory, "control.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _is_private_directory(path: str) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _check_bind(bind: str) -> None:
    """Refuse a ``host:port`` bind whose port is not a number from 0 to 65535."""
    if bind.startswith(("unix:", "fd://")) or ":" not in bind:
        return  # a bare host gets Hypercorn's default port
    port = bind.rpartition(":")[2]
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"bind {bind!r}: the port must be a number from 0 to 65535")


@dataclass(frozen=True)
class ServeConfig:
    """Everything the supervisor needs to run and roll a pool of workers.

    Arguments:
        app: The ASGI application as ``module:attribute``.
        binds: Addresses to listen on (``host:port``, ``unix:path`` or ``fd://n``); secure when a
            certificate is given.
        insecure_binds: Addresses that stay plain HTTP even when a certificate is given.
        workers: Number of worker processes.
        min_active: Workers that must be accepting at every moment of a reload (all of them
            by default); ``workers - min_active`` old workers may drain before their
            replacement is ready.
        max_surge: Replacements a reload starts ahead of drains, beyond ``workers``.
        graceful_timeout: Seconds a stopping worker has to answer what it accepted before it is
            killed.
        keep_alive_timeout: Seconds an idle keep-alive connection stays open.
        startup_timeout: Seconds a new worker has to import the app and finish lifespan startup.
        max_requests: Requests after which a worker asks to be replaced (a rolling
            replacement, by the reload rules); 0 never.
        max_requests_jitter: Up to this many more requests, drawn per worker, so that workers
            started together are not replaced together.
        timeout: Seconds a serving worker's event loop may stay silent (no heartbeat) before the
            worker is killed and replaced; 0 disables the check.
        worker_class: The server each worker runs: ``hypercorn`` (asyncio), ``hypercorn-uvloop``
            or ``uvicorn`` (httptools and uvloop; both need the ``uvicorn`` extra).
        fork_server: Fork each generation's workers from one fresh interpreter that has
            imported the heavy third-party modules (Linux); otherwise each worker starts from
            a fresh interpreter of its own.
        preload_app: Have that fork server import the app's module too, so workers share it
            (fastest; only for an app that opens no connection and starts no thread when
            imported).
        native_accept: uvloop classes: accept plain TCP with uvloop's own server, about 7%
            less CPU per request on a new connection; but a worker out of file descriptors
            then resets the connections queued on the shared socket (libuv's way), where by
            default it stops accepting for a second and leaves them to the others.
        max_worker_lifetime: Seconds after which a serving worker is replaced (a rolling
            replacement, by the reload rules); 0 never.
        max_worker_lifetime_jitter: Up to this many more seconds, drawn per worker.
        metrics_file: Where to write the supervisor's Prometheus metrics (reloads, respawns,
            workers by state), for node_exporter's textfile collector; None: nowhere.
        reload: Watch the code and roll the workers when a file changes (development; needs
            the ``reload`` extra, watchfiles).
        reload_dirs: Directories `reload` watches (the working directory by default).
        reload_includes: File name patterns `reload` watches (``*.py`` by default).
        reload_excludes: File name patterns `reload` ignores.
        release_link: A symbolic link to the release directory to run (``/srv/app/current``):
            resolved once per reload, each generation's workers run in the directory it named
            then.
        certfile: TLS certificate (PEM).
        keyfile: TLS private key (PEM).
        access_logfile: Access log target (``-`` for stderr), none by default.
        error_logfile: Error log target (``-`` for stderr).
        log_level: Level for the supervisor's and the workers' logs.
        backlog: Length of the kernel's accept queue.
        control_socket: Unix socket `quart-waffle reload` talks to (by default beside the pid
            file, else in a private directory: see `private_control_socket`).

    Example::

        ServeConfig(app="examples.app:app", binds=["127.0.0.1:8000"], workers=4)
    """

    app: str
    binds: list[str] = field(default_factory=lambda: ["127.0.0.1:8000"])
    insecure_binds: list[str] = field(default_factory=list)
    workers: int = 1
    min_active: int | None = None
    max_surge: int = 1
    graceful_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    startup_timeout: float = 60.0
    timeout: float = 30.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    worker_class: str = "hypercorn"
    fork_server: bool = True
    preload_app: bool = False
    native_accept: bool = False
    max_worker_lifetime: float = 0.0
    max_worker_lifetime_jitter: float = 0.0
    metrics_file: str | None = None
    reload: bool = False
    reload_dirs: list[str] = field(default_factory=list)
    reload_includes: list[str] = field(default_factory=list)
    reload_excludes: list[str] = field(default_factory=list)
    release_link: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    access_logfile: str | None = None
    error_logfile: str = "-"
    log_level: str = "info"
    backlog: int = 1024
    control_socket: str | None = None

    def __post_init__(self) -> None:
        for name, bounds in RANGES.items():
            if problem := out_of_range(getattr(self, name), bounds):
                raise ValueError(f"{name} {problem}")
        if self.reload:
            check_reload_available()
        for directory in self.reload_dirs:
            if not os.path.isdir(directory):
                raise ValueError(f"reload_dir {directory!r}: no such directory")
        if not 0 <= self.active_floor <= self.workers:
            raise ValueError("min_active must be between 0 and the number of workers")
        if self.reload_step == 0:
            raise ValueError(
                "max_surge is 0 and min_active is the number of workers: a reload could "
                "replace no worker"
            )
        for bind in (*self.binds, *self.insecure_binds):
            _check_bind(bind)
        if self.worker_class not in WORKER_CLASSES:
            choices = ", ".join(WORKER_CLASSES)
            raise ValueError(f"worker_class must be one of {choices}, got {self.worker_class!r}")
        if self.native_accept and self.worker_class not in UVLOOP_CLASSES:
            raise ValueError(
                f"native_accept needs a uvloop worker class ({', '.join(UVLOOP_CLASSES)}), "
                f"not {self.worker_class}"
            )
        if self.worker_class == "uvicorn" and self.certfile and self.insecure_binds:
            raise ValueError("worker_class uvicorn serves TLS on every socket: no insecure_binds")

    @property
    def active_floor(self) -> int:
        """`min_active`, defaulting to every worker."""
        return self.workers if self.min_active is None else self.min_active

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a worker's heartbeats: four per `timeout`, at most one a second;
        0 when the liveness check is off."""
        return min(self.timeout / 4, 1.0)

    @property
    def unavailable(self) -> int:
        """How many old workers a reload may drain before their replacements are ready."""
        return self.workers - self.active_floor

    @property
    def reload_step(self) -> int:
        """How many workers a reload replaces at once: the surge plus those drained first."""
        return self.max_surge + self.unavailable

    def hypercorn_settings(self, secure_fds: list[int], insecure_fds: list[int]) -> dict[str, Any]:
        """The `hypercorn.config.Config.from_mapping` settings of a worker serving these sockets."""
        # Without TLS, Hypercorn serves `bind` as plain HTTP and ignores `insecure_bind`.
        plain_only = not secure_fds
        return {
            "bind": [f"fd://{fd}" for fd in (insecure_fds if plain_only else secure_fds)],
            "insecure_bind": [] if plain_only else [f"fd://{fd}" for fd in insecure_fds],
            "certfile": self.certfile,
            "keyfile": self.keyfile,
            "accesslog": self.access_logfile,
            "errorlog": self.error_logfile,
            "loglevel": self.log_level.upper(),
            "backlog": self.backlog,
            "graceful_timeout": self.graceful_timeout,
            "keep_alive_timeout": self.keep_alive_timeout,
            "startup_timeout": self.startup_timeout,
            "shutdown_timeout": self.graceful_timeout,
        }
