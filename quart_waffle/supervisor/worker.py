"""A worker process: a fresh interpreter serving the app with Hypercorn on inherited sockets.

Started by the supervisor with the JSON of a `WorkerSpec` as its one argument. The worker
talks to the supervisor over one socket: it sends ``ready`` once lifespan startup has finished
and Hypercorn is accepting, or ``failed <reason>`` followed by its traceback. Once ready, a task
on its event loop sends ``beat`` every `WorkerSpec.heartbeat` seconds until it drains, so a
blocked loop falls silent. After `WorkerSpec.max_requests` requests it sends ``recycle``
once, asking to be replaced. It drains when it reads ``drain``, when that socket closes (the
supervisor is gone) or on SIGTERM. SIGINT is ignored: the supervisor decides when its workers
stop. Its environment names its generation in ``QUART_WAFFLE_GENERATION``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

from .drain import ASGIApp, Drain, DrainMiddleware, Message, Receive, Scope, Send

READY = "ready"
FAILED = "failed"
DRAIN = "drain"
BEAT = "beat"
RECYCLE = "recycle"
RESTART = "restart"
GENERATION = "QUART_WAFFLE_GENERATION"  # the environment variable naming the generation

# Connections accepted just before the worker stopped accepting get this long to send a request.
ACCEPT_GRACE = 0.5


class _Restarts:
    """The app's requests for a rolling reload (`request_restart`), sent once the supervisor
    knows this worker is ready (before that, its first line must be ``ready``)."""

    def __init__(self) -> None:
        self.supervised = False
        self.pending: list[str] = []
        self.writer: asyncio.StreamWriter | None = None

    def ask(self, reason: str) -> bool:
        if not self.supervised:
            return False
        reason = " ".join(reason.split())[:200]
        if self.writer is None:
            self.pending.append(reason)
        else:
            self.writer.write(f"{RESTART} {reason}\n".encode())
        return True

    def connect(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        for reason in self.pending:
            self.ask(reason)
        self.pending.clear()


_restarts = _Restarts()


def request_restart(reason: str) -> bool:
    """Ask the supervisor of this worker for a rolling reload of every worker, e.g. because
    the app applied a setting it reads only at start-up. Requests from several workers, or
    made while a reload is requested or under way, share one reload.

    Call it from the worker's event loop. Returns False, doing nothing, when this process is
    not a worker of `quart-waffle serve`.

    Arguments:
        reason: Logged by the supervisor (one line, at most 200 characters kept).

    Example::

        if os.environ.get("QUART_WAFFLE_GENERATION") is not None:
            from quart_waffle.supervisor.worker import request_restart

            request_restart("LOG_LEVEL changed")
    """
    return _restarts.ask(reason)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told on its command line."""

    app: str
    channel_fd: int
    secure_fds: list[int]
    insecure_fds: list[int]
    hypercorn: dict[str, Any]
    heartbeat: float = 0.0
    max_requests: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class AppPath:
    """``module:name`` or ``module:factory(args)``, parsed without evaluating any code."""

    module: str
    attribute: list[str]
    call: tuple[list[Any], dict[str, Any]] | None


def parse_app(path: str) -> AppPath:
    """Parse an app path as Hypercorn takes it: ``module``, ``module:app``, ``module:obj.app``,
    ``module:create_app()`` or a call with literal arguments, ``module:create_app("prod")``.

    Raises `ValueError` with the reason.
    """
    module, _, expression = path.partition(":")
    problem = f"app {path!r}: expected module:name or module:factory(literal arguments)"
    try:
        node = ast.parse(expression or "app", mode="eval").body
        call = None
        if isinstance(node, ast.Call):
            call = (
                [ast.literal_eval(arg) for arg in node.args],
                {str(kw.arg): ast.literal_eval(kw.value) for kw in node.keywords if kw.arg},
            )
            if len(call[1]) != len(node.keywords):
                raise ValueError("no **kwargs")
            node = node.func
        attribute = _dotted(node)
    except (SyntaxError, ValueError):
        raise ValueError(problem) from None
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(problem)
    return AppPath(module, attribute, call)


def _dotted(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_dotted(node.value), node.attr]
    raise ValueError("not a name")


def load_app(path: str) -> ASGIApp:
    """Import the app that `path` names (see `parse_app`) from the working directory, calling
    the factory if it names one."""
    parsed = parse_app(path)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(parsed.module)
    for name in parsed.attribute:
        target = getattr(target, name)
    if parsed.call is not None:
        args, kwargs = parsed.call
        target = target(*args, **kwargs)
    app: ASGIApp = target
    return app


async def _serve(app: ASGIApp, spec: WorkerSpec, channel: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    config = Config.from_mapping(spec.hypercorn)
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    drain = Drain(config.keep_alive_timeout)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def watch_channel() -> None:
        await reader.readline()  # DRAIN, or end of file if the supervisor died
        stop.set()

    async def shutdown_trigger() -> None:
        # Hypercorn calls this once its servers accept, after lifespan startup.
        writer.write(f"{READY}\n".encode())
        await writer.drain()
        _restarts.connect(writer)
        watchers = [asyncio.create_task(watch_channel())]
        if spec.heartbeat:
            watchers.append(asyncio.create_task(_beat(writer, spec.heartbeat)))
        try:
            await stop.wait()
        finally:
            for watcher in watchers:
                watcher.cancel()
        started = time.monotonic()
        deadline = started + config.graceful_timeout
        for fd in (*spec.secure_fds, *spec.insecure_fds):
            # The shared accept queue stays open: the other workers take what is queued.
            loop.remove_reader(fd)
        drain.begin()
        await drain.settle(ACCEPT_GRACE, min(deadline, started + config.keep_alive_timeout))
        # What is left of the graceful timeout is Hypercorn's to finish requests in flight.
        config.graceful_timeout = max(deadline - time.monotonic(), 0.0)

    startup_failures: list[str] = []
    if spec.max_requests:
        app = _counting(app, spec.max_requests, lambda: writer.write(f"{RECYCLE}\n".encode()))
    try:
        await serve(
            cast(ASGIFramework, DrainMiddleware(_recording(app, startup_failures), drain)),
            config,
            shutdown_trigger=shutdown_trigger,
            mode="asgi",
        )
    except Exception as error:
        writer.write(_failure(error, "".join(startup_failures) or traceback.format_exc()))
        await writer.drain()
        raise
    finally:
        writer.close()


def _counting(app: ASGIApp, limit: int, exhausted: Callable[[], None]) -> ASGIApp:
    """`app`, calling `exhausted` once, when its `limit`-th HTTP or WebSocket connection
    scope starts."""
    served = 0

    async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal served
        if scope["type"] in ("http", "websocket"):
            served += 1
            if served == limit:
                exhausted()
        await app(scope, receive, send)

    return counting_app


async def _beat(writer: asyncio.StreamWriter, interval: float) -> None:
    """Tell the supervisor every `interval` seconds that this event loop still runs."""
    try:
        while True:
            writer.write(f"{BEAT}\n".encode())
            await writer.drain()
            await asyncio.sleep(interval)
    except ConnectionError:
        pass  # the supervisor is gone: the channel watcher stops the worker


def _recording(app: ASGIApp, startup_failures: list[str]) -> ASGIApp:
    """`app`, noting the traceback of a failed lifespan startup: the app reports only a
    message to Hypercorn, but sends it while its exception is being handled."""

    async def recording_app(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                handled = sys.exc_info()[1]
                startup_failures.append(
                    traceback.format_exc() if handled else str(message.get("message", ""))
                )
            await send(message)

        await app(scope, receive, recording_send if scope["type"] == "lifespan" else send)

    return recording_app


def _failure(error: BaseException, details: str) -> bytes:
    """The channel's failure report: one ``failed <reason>`` line, then the traceback."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return f"{FAILED} {reason}\n{details}".encode(errors="replace")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = WorkerSpec.from_json(sys.argv[-1])
    _restarts.supervised = True
    channel = socket.socket(fileno=spec.channel_fd)
    try:
        app = load_app(spec.app)
    except Exception as error:
        channel.sendall(_failure(error, traceback.format_exc()))
        channel.close()
        raise
    asyncio.run(_serve(app, spec, channel))
