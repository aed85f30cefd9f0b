"""Accepting from a listening socket that every worker shares, one connection per wake-up.

The kernel keeps one accept queue per listening socket, and every worker waits on it. asyncio
accepts up to the backlog on each wake-up and uvloop until the queue is empty, so the worker
that wakes first takes every connection queued at that moment: ten keep-alive clients that
connect together can all land on one worker and stay there while the others idle. Taking one
connection per wake-up, then yielding the CPU while more are queued, leaves the rest to the
other workers woken with it, even on a machine with fewer cores than workers; a busy worker's
loop comes round later.
The listening socket itself is left as the supervisor made it.

With ``native_accept``, uvloop's worker classes serve plain TCP with uvloop's own server
instead (`NativeServer`): libuv (1.45 and later) also accepts one connection per wake-up, and
does in C what the Python path spends about 7% of the CPU of a request on a new connection on.
Out of file descriptors, though, libuv accepts and closes every connection queued on the
shared socket (its clients see a reset), connections the other workers could have served;
the Python path stops accepting for `RETRY_DELAY` instead. TLS keeps the Python path for its
handshakes (see `SharedSocketServer`).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import select
import socket
from collections.abc import Callable, Coroutine
from ssl import SSLContext, SSLError
from typing import Any, cast

from .tcpinfo import listen_backlog

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

RETRY_DELAY = 1.0  # seconds before accepting again when out of file descriptors or memory
HANDSHAKE_GRACE = 1.0  # seconds a TLS handshake under way when accepting stops may still take
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

logger = logging.getLogger(__name__)


class SharedSocketServer(asyncio.AbstractServer):
    """Serves `sock` with `protocol_factory`, accepting one connection each time the event
    loop finds it readable, on asyncio's loop or uvloop alike. Closing it stops accepting;
    connections still in their TLS handshake get `HANDSHAKE_GRACE` seconds to finish it (a
    client's takes milliseconds), then are dropped: they have asked for nothing yet, and one
    that never finishes could hold a drain for the whole handshake timeout. Those handed to
    their protocol are left to the server class."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: ProtocolFactory,
        *,
        ssl_context: SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._factory = protocol_factory
        self._tls: dict[str, Any] = {}
        if ssl_context is not None:
            self._tls = {"ssl": ssl_context, "ssl_handshake_timeout": ssl_handshake_timeout}
        self._serving = False
        self._closed = False
        # accepted connections not yet handed to their protocol, by the task handing each over
        self._connecting: dict[asyncio.Task[None], socket.socket] = {}
        self._queue = select.poll()  # whether connections are still queued
        self._queue.register(sock, select.POLLIN)
        sock.setblocking(False)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._listen()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Future()

    def close(self) -> None:
        if self._serving:
            self._loop.remove_reader(self._sock.fileno())
        self._serving = False
        self._closed = True
        if self._tls and self._connecting:
            self._loop.call_later(HANDSHAKE_GRACE, self._drop_handshakes)

    def _drop_handshakes(self) -> None:
        for task, conn in list(self._connecting.items()):
            handoff = cast(Coroutine[Any, Any, None], task.get_coro())
            if inspect.getcoroutinestate(handoff) == inspect.CORO_CREATED:
                conn.close()  # no transport has it yet to close it when cancelled
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the connections accepted but not yet handed to their protocol."""
        if self._connecting:
            await asyncio.wait(self._connecting)

    def _listen(self) -> None:
        if not self._serving and not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._serving = True

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client left
        except OSError as error:
            if error.errno not in _RESOURCE_ERRORS:
                raise
            logger.error("accept failed (%s): accepting again in %g s", error, RETRY_DELAY)
            self._loop.remove_reader(self._sock.fileno())
            self._serving = False
            self._loop.call_later(RETRY_DELAY, self._listen)
            return
        # Every worker waiting on the socket was woken; if connections are queued behind this
        # one, let those waiting for a CPU take them. (The event loop makes `conn` nonblocking.)
        if self._queue.poll(0):
            os.sched_yield()
        task = self._loop.create_task(self._connect(conn))
        self._connecting[task] = conn
        task.add_done_callback(self._connecting.pop)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, **self._tls)
        except (OSError, SSLError, TimeoutError) as error:
            # A failed handshake or a client gone: that connection's loss, not the worker's.
            logger.debug("connection failed before it was served: %s", error)
            conn.close()


async def create_server(
    protocol_factory: ProtocolFactory,
    host: Any = None,
    port: Any = None,
    *,
    sock: socket.socket | None = None,
    ssl: SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    backlog: int | None = None,
    start_serving: bool = True,
) -> SharedSocketServer:
    """`loop.create_server` for a worker: it serves an inherited socket (`sock`), never binds
    one, and ignores ``backlog``, which would call ``listen`` again on the shared socket."""
    del backlog
    if sock is None or host is not None or port is not None:
        raise ValueError("a worker serves the sockets its supervisor passed it")
    server = SharedSocketServer(
        sock, protocol_factory, ssl_context=ssl, ssl_handshake_timeout=ssl_handshake_timeout
    )
    if start_serving:
        await server.start_serving()
    return server


class NativeServer(asyncio.AbstractServer):
    """The event loop's own `server` for a plain TCP socket of uvloop's.
    `wait_closed` returns once it accepts no more: uvloop's also waits for every connection
    to close, and a drain waits for those itself, by its own rules."""

    def __init__(self, server: asyncio.AbstractServer) -> None:
        self._server = server

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(getattr(self._server, "sockets", None) or ())

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        """Nothing to wait for: a plain TCP connection reaches its protocol on the loop's
        next turn after its accept, well within the least wait of a drain."""


def native_arguments(loop: asyncio.AbstractEventLoop, **kwargs: Any) -> dict[str, Any] | None:
    """The arguments for the loop's own `create_server`, if it may serve this socket: uvloop's,
    for plain TCP on Linux, with the ``backlog`` the socket already has (libuv listens again,
    and the queue must stay as the supervisor, or systemd, made it); else None."""
    sock = kwargs.get("sock")
    if not type(loop).__module__.startswith("uvloop") or kwargs.get("ssl") is not None:
        return None
    if not isinstance(sock, socket.socket) or (backlog := listen_backlog(sock)) is None:
        return None
    return {**kwargs, "backlog": backlog}
