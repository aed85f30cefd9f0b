"""The fork server: a fresh interpreter that imports the heavy modules once, then forks each
worker asked of it, so a reload pays for those imports once rather than once per worker, and
new workers take little CPU from the serving ones.

Started by the supervisor (`forkserver.ForkServer`) in a generation's directory and
environment, with the JSON of a `ZygoteSpec` as its one argument and the listening sockets at
the numbers the workers' specs name. Over its channel (a ``SOCK_SEQPACKET`` socket) it sends
``ready``, or ``failed <reason>`` and the traceback when the app module it preloads cannot be
imported. Then it answers two requests:

- a `WorkerSpec` as JSON, the worker's channel attached: it forks twice, so that the worker is
  adopted by the supervisor (a child subreaper) and waited for there as any child, and answers
  ``forked <pid>`` (``error <reason>`` when it cannot fork, or when the request is malformed:
  then it closes what the request carried and serves on);
- ``check <generation>``: whether what it loaded is still what is on disk (`loaded`), so
  that `generation` may be forked from it too: ``fresh``, or ``stale <path>``.

It creates no event loop and no thread, and exits once its channel closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import json
import os
import signal
import socket
import sys
import traceback
from dataclasses import asdict, dataclass

from .loaded import LoadedCode
from .proctitle import set_title
from .worker import GENERATION, WorkerSpec, failure_report, import_app_module, main, parse_app

READY = "ready"
FORKED = "forked"
ERROR = "error"
CHECK = "check"
FRESH = "fresh"
STALE = "stale"
MAX_MESSAGE = 64 * 1024  # a request; also the most of a failed preload's traceback sent

PRELOAD = (
    "quart",
    "jinja2",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "redis.asyncio",
    "aiosqlite",
    "asyncpg",
    "prometheus_client",
    "quart_waffle.extension",
    "quart_waffle.cli",
    "quart_waffle.admin.api",
    "quart_waffle.admin.fleet_panel",
    "quart_waffle.admin.page",
    "quart_waffle.admin.schedule_api",
    "quart_waffle.admin.schedule_page",
    "quart_waffle.fleet.files",
    "quart_waffle.fleet.redis",
    "quart_waffle.fleet.table",
    "quart_waffle.promotion",
    "quart_waffle.rollback",
    "quart_waffle.schedule",
    "quart_waffle.sync.file",
    "quart_waffle.sync.postgres",
    "quart_waffle.sync.redis",
    "quart_waffle.sync.runner",
)
"""Modules imported before any fork where installed (third-party ones, and the parts of this
library an app's workers import, some only as the extension starts): none opens a connection,
starts a thread or creates an event loop when imported. (Not ``quart_waffle.metrics.prometheus``:
its metrics, made when it is imported, would name the fork server's pid.)"""

SERVERS = {
    "hypercorn": ("hypercorn.asyncio", ".worker_hypercorn"),
    "hypercorn-uvloop": ("uvloop", "hypercorn.asyncio", ".worker_hypercorn"),
    "uvicorn": (
        "uvloop",
        "httptools",
        "uvicorn",
        "uvicorn.lifespan.on",
        "uvicorn.protocols.http.httptools_impl",
        "uvicorn.protocols.websockets.auto",
        ".worker_uvicorn",
    ),
}
"""The server modules of each worker class."""


@dataclass(frozen=True)
class ZygoteSpec:
    """What a fork server is told on its command line."""

    app: str
    worker_class: str
    preload_app: bool
    channel_fd: int
    started_ns: int
    """When the supervisor started it (`time.time_ns()`): a file changed since may have been
    loaded in either state."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ZygoteSpec:
        return cls(**json.loads(text))


def preload(worker_class: str) -> None:
    """Import what every worker of `worker_class` imports. A module that is missing or fails is
    left out: a worker importing it fails on its own, and reports it as it always does."""
    for name in (*PRELOAD, *SERVERS.get(worker_class, ())):
        with contextlib.suppress(Exception):
            importlib.import_module(name, __package__)


def serve_forks(channel: socket.socket, loaded: LoadedCode, app: str) -> WorkerSpec | None:
    """Answer each request on `channel` until it closes (then None, in the fork server): fork
    a worker, or say whether what it `loaded` is unchanged (then it forks for that generation
    too, and is titled so); in each worker, return its spec."""
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, MAX_MESSAGE, 1)
        except ConnectionError:
            return None
        if not message:
            for fd in fds:
                os.close(fd)
            return None
        kind, _, generation = message.partition(b" ")
        if kind == CHECK.encode() and not fds:
            changed = loaded.first_changed()
            if changed is None:
                set_title("fork-server", app, generation.decode(errors="replace"))
                channel.send(FRESH.encode())
            else:
                channel.send(f"{STALE} ".encode() + os.fsencode(changed)[: MAX_MESSAGE // 2])
            continue
        try:
            if len(fds) != 1:
                raise ValueError("a request carries one channel")
            spec = dataclasses.replace(WorkerSpec.from_json(message.decode()), channel_fd=fds[0])
        except Exception as error:  # any request it cannot read (JSON too deep, say)
            for fd in fds:
                os.close(fd)
            channel.send(f"{ERROR} malformed request: {error}".encode())
            continue
        try:
            pid = _fork_adopted()
        except OSError as error:
            channel.send(f"{ERROR} {error}".encode())
        else:
            if pid == 0:
                channel.close()
                os.environ[GENERATION] = str(spec.generation)
                return spec
            channel.send(f"{FORKED} {pid}".encode())
        os.close(fds[0])


def _fork_adopted() -> int:
    """Fork a process whose parent exits at once, so that the nearest child subreaper (the
    supervisor) adopts it: 0 in that process, its pid here."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        pid = -1
        try:
            os.close(read)
            pid = os.fork()
            if pid == 0:
                os.close(write)
                return 0
            os.write(write, str(pid).encode())
        finally:
            if pid != 0:
                os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(middle, 0)  # once it is reaped, its child has been adopted
    if not answer:
        raise OSError("the second fork failed")
    return int(answer)


def run() -> None:
    """The fork server's process: preload, say ``ready``, fork workers; a forked worker goes on
    to serve from here (the fork server's frames above this one are left as they are)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when it stops
    spec = ZygoteSpec.from_json(sys.argv[-1])
    set_title("fork-server", spec.app, os.environ.get(GENERATION, "0"))
    channel = socket.socket(fileno=spec.channel_fd)
    preload(spec.worker_class)
    if spec.preload_app:
        try:
            import_app_module(parse_app(spec.app))
        except Exception as error:
            channel.send(failure_report(error, traceback.format_exc())[:MAX_MESSAGE])
            channel.close()
            raise
    # What it imported is never collected in the workers, so collections there neither scan
    # it nor copy the memory pages it lies on.
    gc.collect()
    gc.freeze()
    loaded = LoadedCode.record(spec.started_ns)
    channel.send(READY.encode())
    worker = serve_forks(channel, loaded, spec.app)
    if worker is None:
        os._exit(0)  # nothing to flush or close: skip tearing down the modules it imported
    main(worker)
