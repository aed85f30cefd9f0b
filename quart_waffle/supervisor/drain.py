"""Connection draining: what lets one worker stop without failing a single HTTP/1 request.

Hypercorn, when its shutdown trigger fires, closes idle keep-alive connections at once and
closes busy ones after their response without saying so; a client that sends its next request
at that moment gets no answer. So a worker first stops accepting, then answers every request
with ``Connection: close`` until its connections are gone, and only then lets Hypercorn shut
down. This module is the ASGI half of that: it counts requests in flight, remembers which
connections may still send one, and adds the header once draining has begun. The worker also
reports connections as the server accepts and loses them (`Drain.connection_opened`), so one
accepted whose first request has not reached the app yet counts too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_POLL_INTERVAL = 0.02
_PRUNE_AT = 1024  # remembered connections before those idle too long are forgotten


class Connection:
    """What a `Drain` remembers of one HTTP/1 connection."""

    __slots__ = ("idle_since", "sent", "transport")

    def __init__(self, idle_since: float | None) -> None:
        self.idle_since = idle_since  # when it went idle; None while a request runs
        self.sent = False  # bytes received since its last request started: maybe the next one
        self.transport: asyncio.BaseTransport | None = None


class Drain:
    """The draining state of one worker and the HTTP/1 connections it has seen.

    Arguments:
        keep_alive_timeout: Seconds after which the server itself closes an idle connection, so
            a connection idle for longer can no longer send a request.
        hung_up: Whether the client of a transport has closed its side, asked only while
            draining: an idle connection like that, whose client sent nothing since its last
            request (`Connection.sent`), sends no request, though a server may notice it late.
    """

    def __init__(
        self,
        keep_alive_timeout: float,
        hung_up: Callable[[asyncio.BaseTransport], bool] | None = None,
    ) -> None:
        self.keep_alive_timeout = keep_alive_timeout
        self.draining = False
        self.in_flight = 0
        self._hung_up = hung_up
        self._connections: dict[tuple[Any, ...], Connection] = {}  # by client address
        self._prune_at = _PRUNE_AT

    def begin(self) -> None:
        self.draining = True

    def connection_opened(
        self, client: tuple[Any, ...], transport: asyncio.BaseTransport | None = None
    ) -> Connection:
        """The server accepted a connection from `client`: idle until its first request.
        Whoever reads its bytes sets `sent` on the record returned. A record of an earlier
        connection from the same address, not yet reported lost, is replaced."""
        connection = self._add(client)
        connection.transport = transport
        return connection

    def connection_closed(self, client: tuple[Any, ...], connection: Connection) -> None:
        """`connection`, from `client`, is gone. The client's next connection may come from
        the same address before the server reports this one lost: that one is kept."""
        self._forget(client, connection)

    def request_started(self, client: tuple[Any, ...] | None) -> Connection | None:
        """A request from `client` started; returns its connection's record, for
        `request_finished`."""
        self.in_flight += 1
        if client is None:
            return None
        connection = self._connections.get(client) or self._add(client)
        connection.idle_since = None
        connection.sent = False
        return connection

    def request_finished(
        self, client: tuple[Any, ...] | None, connection: Connection | None, *, closing: bool
    ) -> None:
        self.in_flight -= 1
        if client is None or connection is None:
            return
        if closing:
            self._forget(client, connection)
        else:
            connection.idle_since = time.monotonic()

    def _forget(self, client: tuple[Any, ...], connection: Connection) -> None:
        if self._connections.get(client) is connection:
            del self._connections[client]

    def live_connections(self) -> int:
        """Connections that may still send a request."""
        horizon = time.monotonic() - self.keep_alive_timeout
        return sum(
            connection.idle_since is None
            or (connection.idle_since > horizon and not self._has_hung_up(connection))
            for connection in self._connections.values()
        )

    def _has_hung_up(self, connection: Connection) -> bool:
        return (
            self._hung_up is not None
            and connection.transport is not None
            and not connection.sent
            and self._hung_up(connection.transport)
        )

    def _add(self, client: tuple[Any, ...]) -> Connection:
        if len(self._connections) >= self._prune_at:
            self._prune()
        connection = self._connections[client] = Connection(time.monotonic())
        return connection

    def _prune(self) -> None:
        """Forget connections idle past the keep-alive timeout: without the server reporting
        lost connections, clients that leave without ``Connection: close`` would pile up."""
        horizon = time.monotonic() - self.keep_alive_timeout
        self._connections = {
            client: connection
            for client, connection in self._connections.items()
            if connection.idle_since is None or connection.idle_since > horizon
        }
        self._prune_at = max(_PRUNE_AT, 2 * len(self._connections))

    async def settle(self, deadline: float, *, at_least: float = 0.0) -> None:
        """Wait until no request is running and no connection can send one, and at least
        `at_least` seconds, never past `deadline` (a `time.monotonic()` value). Every
        connection accepted should have been reported (`connection_opened`) by then: one
        accepted just before the worker stopped accepting may send its first request later,
        and `at_least` covers one the server makes or reports late."""
        earliest = time.monotonic() + at_least
        while time.monotonic() < deadline:
            quiet = self.in_flight == 0 and self.live_connections() == 0
            if quiet and time.monotonic() >= earliest:
                return
            await asyncio.sleep(_POLL_INTERVAL)


class DrainMiddleware:
    """ASGI middleware that feeds a `Drain` and closes connections once it is draining.

    Example::

        drain = Drain(keep_alive_timeout=5.0)
        app = DrainMiddleware(app, drain)
    """

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = scope.get("http_version")
        # HTTP/2 has its own GOAWAY and forbids connection headers; websockets are left alone.
        if scope["type"] != "http" or version not in _HTTP1:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        client = tuple(peer) if peer else None
        # HTTP/1.0 closes after each response unless it negotiated keep-alive, which is rare.
        closing = version == "1.0" or _has_close(scope.get("headers", ()))
        drain = self.drain
        connection = drain.request_started(client)

        async def send_closing(message: Message) -> None:
            nonlocal closing
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if _has_close(headers):
                    closing = True
                elif drain.draining:
                    message = {**message, "headers": [*headers, _CLOSE]}
                    closing = True
            await send(message)

        try:
            await self.app(scope, receive, send_closing)
        finally:
            drain.request_finished(client, connection, closing=closing)


_HTTP1 = frozenset(("1.0", "1.1"))
_CLOSE = (b"connection", b"close")


def _has_close(headers: Any) -> bool:
    """Whether `headers` (ASGI's name and value pairs, any case) say ``Connection: close``;
    run twice per request, so the length is compared before any name is lowered."""
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection" and b"close" in value.lower():
            return True
    return False
