"""A worker process: a fresh interpreter serving the app on inherited sockets with the server
its worker class names (`WORKER_CLASSES`: Hypercorn by default, or uvicorn).

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
import atexit
import contextlib
import ctypes
import gc
import importlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from . import tcpinfo
from .accept import NativeServer, create_server, native_arguments
from .drain import ASGIApp, Connection, Drain, DrainMiddleware, Message, Receive, Scope, Send
from .logfiles import reopen_on_usr1
from .proctitle import set_title
from .scheduling import end_gentle_start

READY = "ready"
FAILED = "failed"
DRAIN = "drain"
BEAT = "beat"
RECYCLE = "recycle"
RESTART = "restart"
GENERATION = "QUART_WAFFLE_GENERATION"  # the environment variable naming the generation

UVLOOP_CLASSES = ("hypercorn-uvloop", "uvicorn")
WORKER_CLASSES = {
    "hypercorn": "Hypercorn on asyncio's own event loop",
    "hypercorn-uvloop": "Hypercorn on uvloop (the uvicorn extra)",
    "uvicorn": "uvicorn with httptools and uvloop (the uvicorn extra)",
}
"""The servers a worker can run, for ``--worker-class``."""

# A drain waits at least this long, so that a connection accepted just before the worker
# stopped accepting can send its request even where its server reports it late, or cannot
# (a unix socket's clients have no address to tell their connections apart by, see `Drain`).
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
    """The server's settings, in the names of `hypercorn.config.Config`, whatever the class."""
    heartbeat: float = 0.0
    max_requests: int = 0
    worker_class: str = "hypercorn"
    generation: int = 0
    native_accept: bool = False

    @property
    def graceful_timeout(self) -> float:
        return float(self.hypercorn.get("graceful_timeout", 10.0))

    @property
    def keep_alive_timeout(self) -> float:
        return float(self.hypercorn.get("keep_alive_timeout", 5.0))

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
    target: Any = import_app_module(parsed)
    for name in parsed.attribute:
        target = getattr(target, name)
    if parsed.call is not None:
        args, kwargs = parsed.call
        target = target(*args, **kwargs)
    app: ASGIApp = target
    return app


def import_app_module(parsed: AppPath) -> Any:
    """Import the module of an app path from the working directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(parsed.module)


class Control:
    """The worker's end of its connection to the supervisor, and its stop signal.

    A worker class serves the app it is given (which feeds `connections`), calls `ready` once
    it accepts, awaits `stopping`, then `drain`, and leaves what `drain` returns (seconds) to
    the requests still running before it stops.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: WorkerSpec
    ) -> None:
        self.spec = spec
        self.stop = asyncio.Event()
        self.connections = Drain(spec.keep_alive_timeout, _hang_up_probe)
        self.requests = 0  # HTTP requests and WebSocket connections, sent with each heartbeat
        self._reader = reader
        self._writer = writer
        self._watchers: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, channel: socket.socket, spec: WorkerSpec) -> Control:
        reader, writer = await asyncio.open_unix_connection(sock=channel)
        control = cls(reader, writer, spec)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, control.stop.set)
        return control

    async def ready(self) -> None:
        """Tell the supervisor this worker accepts; heartbeats start."""
        self._writer.write(f"{READY}\n".encode())
        await self._writer.drain()
        _restarts.connect(self._writer)
        self._watchers.append(asyncio.create_task(self._watch()))
        if self.spec.heartbeat:
            beat = _beat(self._writer, self.spec.heartbeat, lambda: self.requests)
            self._watchers.append(asyncio.create_task(beat))

    async def stopping(self) -> None:
        """Return once the worker must drain: ``drain`` read, the supervisor gone, or SIGTERM."""
        try:
            await self.stop.wait()
        finally:
            for watcher in self._watchers:
                watcher.cancel()

    async def drain(self, servers: Iterable[asyncio.AbstractServer]) -> float:
        """Stop accepting, then wait until no connection may send another request (see
        `Drain.settle`). Returns what is left of the graceful timeout for requests in flight.

        The listening sockets are shared: once this worker stops taking from their accept
        queues, the other workers take what is queued.
        """
        started = time.monotonic()
        deadline = started + self.spec.graceful_timeout
        for server in servers:
            server.close()  # accepts no more; connections accepted are served
        self.connections.begin()
        # Each connection accepted is reported to `connections` once handed to its protocol.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                await asyncio.gather(*(server.wait_closed() for server in servers))
        # Not cut at the keep-alive timeout: on a busy machine, a connection answered just
        # before the drain may send its next request later than that, and closing it then
        # fails that request. `settle` forgets connections idle past the timeout by itself.
        await self.connections.settle(deadline, at_least=ACCEPT_GRACE)
        return max(deadline - time.monotonic(), 0.0)

    def track_servers(self) -> list[asyncio.AbstractServer]:
        """The servers the worker class will create on this event loop (asyncio's or uvloop's),
        as it creates them. Each accepts one connection per wake-up from its shared socket
        (see `accept`), and reports the connections it accepts and loses to `connections`:
        server classes keep both to themselves, and a worker must stop accepting, then know
        every connection that may still send a request, before it stops."""
        loop = asyncio.get_running_loop()
        servers: list[asyncio.AbstractServer] = []
        create_native_server = loop.create_server

        async def tracking_create_server(
            protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            factory = _reporting_connections(protocol_factory, self.connections)
            # Started gently (see `scheduling`), the worker serves at the normal policy from
            # its first accept on: a connection must not wait for the CPU to fall idle.
            end_gentle_start(os.getpid())
            server: asyncio.AbstractServer
            native = None
            if self.spec.native_accept and all(arg is None for arg in args):
                native = native_arguments(loop, **kwargs)
            if native is not None:
                server = NativeServer(await create_native_server(factory, **native))
            else:
                server = await create_server(factory, *args, **kwargs)
            servers.append(server)
            return server

        loop.create_server = tracking_create_server  # type: ignore[method-assign,assignment]
        return servers

    def recycle(self) -> None:
        self._writer.write(f"{RECYCLE}\n".encode())

    async def failed(self, error: BaseException, details: str) -> None:
        self._writer.write(failure_report(error, details))
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    async def _watch(self) -> None:
        await self._reader.readline()  # DRAIN, or end of file if the supervisor died
        self.stop.set()


def _hang_up_probe(transport: asyncio.BaseTransport) -> bool:
    """Whether the client of `transport` has closed its side.

    Hypercorn may notice such a client of an idle keep-alive connection only when its
    keep-alive timeout closes the connection, and a drain would wait that long for a request
    that cannot come. Linux tells from the socket's TCP state; elsewhere the answer is no.
    """
    sock = transport.get_extra_info("socket")
    return sock is not None and tcpinfo.state(sock) == tcpinfo.CLOSE_WAIT


def _reporting_connections(
    protocol_factory: Callable[[], asyncio.BaseProtocol], drain: Drain
) -> Callable[[], asyncio.BaseProtocol]:
    """`protocol_factory`, its protocols telling `drain` of each TCP connection made and lost
    (keyed by the client's address, as ASGI scopes name it) and marking it when bytes arrive."""

    def factory() -> asyncio.BaseProtocol:
        protocol = protocol_factory()
        made, lost = protocol.connection_made, protocol.connection_lost
        client: tuple[Any, ...] | None = None
        connection: Connection | None = None
        if isinstance(protocol, asyncio.Protocol):
            received = protocol.data_received

            def data_received(data: bytes) -> None:
                if connection is not None:
                    connection.sent = True
                received(data)

            protocol.data_received = data_received  # type: ignore[method-assign]

        def connection_made(transport: asyncio.BaseTransport) -> None:
            nonlocal client, connection
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                client = (peer[0], peer[1])
                connection = drain.connection_opened(client, transport)
            made(transport)

        def connection_lost(error: Exception | None) -> None:
            if client is not None and connection is not None:
                drain.connection_closed(client, connection)
            lost(error)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        protocol.connection_lost = connection_lost  # type: ignore[method-assign,assignment]
        return protocol

    return factory


def _wrap(app: ASGIApp, control: Control, startup_failures: list[str]) -> ASGIApp:
    """`app` as every worker class serves it: draining, counting requests (for the
    supervisor's `workers` command and towards ``max_requests``) and recording a failed
    lifespan startup's traceback."""
    return DrainMiddleware(
        _counting_and_recording(app, control, startup_failures), control.connections
    )


def _counting_and_recording(app: ASGIApp, control: Control, startup_failures: list[str]) -> ASGIApp:
    """`app`, counting its HTTP and WebSocket connection scopes in `control.requests` (asking
    once to be recycled, when the ``max_requests``-th starts), and noting the traceback of a
    failed lifespan startup: the app reports only a message to the server, but sends it while
    its exception is being handled. A plain function returning the app's awaitable, so a
    request pays for no coroutine of its own here."""
    limit = control.spec.max_requests

    def counting_app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "lifespan":
            return app(scope, receive, _recording_failures(send, startup_failures))
        if kind in ("http", "websocket"):
            control.requests += 1
            if control.requests == limit:
                control.recycle()
        return app(scope, receive, send)

    return counting_app


def _recording_failures(send: Send, startup_failures: list[str]) -> Send:
    async def recording_send(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed":
            handled = sys.exc_info()[1]
            startup_failures.append(
                traceback.format_exc() if handled else str(message.get("message", ""))
            )
        await send(message)

    return recording_send


async def _beat(writer: asyncio.StreamWriter, interval: float, requests: Callable[[], int]) -> None:
    """Tell the supervisor every `interval` seconds that this event loop still runs, with the
    requests served so far: ``beat <requests>``."""
    try:
        while True:
            writer.write(f"{BEAT} {requests()}\n".encode())
            await writer.drain()
            await asyncio.sleep(interval)
    except ConnectionError:
        pass  # the supervisor is gone: the channel watcher stops the worker


def failure_report(error: BaseException, details: str) -> bytes:
    """The channel's failure report: one ``failed <reason>`` line, then the traceback."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return f"{FAILED} {reason}\n{details}".encode(errors="replace")


async def _serve(app: ASGIApp, spec: WorkerSpec, channel: socket.socket) -> None:
    control = await Control.open(channel, spec)
    startup_failures: list[str] = []
    try:
        if spec.worker_class == "uvicorn":
            from .worker_uvicorn import serve
        else:
            from .worker_hypercorn import serve
        await serve(_wrap(app, control, startup_failures), control)
    except Exception as error:
        await control.failed(error, "".join(startup_failures) or traceback.format_exc())
        raise
    finally:
        control.close()


def main(spec: WorkerSpec | None = None) -> None:
    """Serve as the worker `spec` describes (by default, the one on the command line): in a
    fresh interpreter, or in a process forked by the generation's fork server (`zygote`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reopen_on_usr1()
    spec = spec or WorkerSpec.from_json(sys.argv[-1])
    set_title("worker", spec.app, os.environ.get(GENERATION, "0"))
    _restarts.supervised = True
    channel = socket.socket(fileno=spec.channel_fd)
    try:
        loop_factory = _loop_factory(spec.worker_class)
        app = load_app(spec.app)
    except Exception as error:
        channel.sendall(failure_report(error, traceback.format_exc()))
        channel.close()
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(app, spec, channel))
    _leave()


def _leave() -> None:
    """Exit at once, as the interpreter's own exit would (exit functions run, every open file
    flushed, C's stdio buffers too) but without freeing every module and object first: that
    costs a drained worker a tenth of a second of CPU or more, taken from the workers serving
    beside it. Returns, leaving the exit to the interpreter, while a thread that exit would
    wait for still runs."""
    main_thread = threading.main_thread()
    if any(not t.daemon and t is not main_thread for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for file in [o for o in gc.get_objects() if isinstance(o, io.IOBase)]:
        with contextlib.suppress(Exception):  # closed, or a broken pipe
            file.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)  # what C code wrote through its stdio buffers
    os._exit(0)


def _loop_factory(worker_class: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop of `worker_class`; raises `RuntimeError` naming the extra it needs."""
    if worker_class not in WORKER_CLASSES:
        raise ValueError(f"unknown worker class {worker_class!r}")
    if worker_class not in UVLOOP_CLASSES:
        return None
    try:
        import uvloop

        if worker_class == "uvicorn":
            import uvicorn  # noqa: F401 (checked here, where a failure is reported)
    except ImportError as error:
        raise RuntimeError(
            f"worker class {worker_class} needs the uvicorn extra ({error}):"
            " pip install 'quart-waffle[uvicorn]'"
        ) from None
    return uvloop.new_event_loop
