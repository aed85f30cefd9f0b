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


class Drain:
    """The draining state of one worker and the HTTP/1 connections it has seen.

    Arguments:
        keep_alive_timeout: Seconds after which the server itself closes an idle connection, so
            a connection idle for longer can no longer send a request.
    """

    def __init__(self, keep_alive_timeout: float) -> None:
        self.keep_alive_timeout = keep_alive_timeout
        self.draining = False
        self.in_flight = 0
        # Client address -> when its connection went idle, or None while a request is running.
        self._connections: dict[tuple[Any, ...], float | None] = {}
        # Client address -> whether that client has closed its side (when the server can tell).
        self._hung_up: dict[tuple[Any, ...], Callable[[], bool]] = {}
        # Clients that sent bytes since their last request started: maybe the next one.
        self._sent: set[tuple[Any, ...]] = set()
        self._prune_at = _PRUNE_AT

    def begin(self) -> None:
        self.draining = True

    def connection_opened(
        self, client: tuple[Any, ...], hung_up: Callable[[], bool] | None = None
    ) -> None:
        """The server accepted a connection from `client`: idle until its first request.

        `hung_up` tells whether the client has closed its side: an idle connection like that,
        whose client sent nothing since its last request (see `data_received`), sends no
        request, though a server may notice it late.
        """
        self._connections.setdefault(client, time.monotonic())
        if hung_up is not None:
            self._hung_up[client] = hung_up

    def data_received(self, client: tuple[Any, ...]) -> None:
        self._sent.add(client)

    def connection_closed(self, client: tuple[Any, ...]) -> None:
        self._connections.pop(client, None)
        self._hung_up.pop(client, None)
        self._sent.discard(client)

    def request_started(self, client: tuple[Any, ...] | None) -> None:
        self.in_flight += 1
        if client is None:
            return
        self._connections[client] = None
        self._sent.discard(client)
        if len(self._connections) >= self._prune_at:
            self._prune()

    def request_finished(self, client: tuple[Any, ...] | None, *, closing: bool) -> None:
        self.in_flight -= 1
        if client is None:
            return
        if closing:
            self._connections.pop(client, None)
        elif client in self._connections:  # not lost meanwhile
            self._connections[client] = time.monotonic()

    def live_connections(self) -> int:
        """Connections that may still send a request."""
        horizon = time.monotonic() - self.keep_alive_timeout
        return sum(
            idle is None or (idle > horizon and not self._has_hung_up(client))
            for client, idle in self._connections.items()
        )

    def _has_hung_up(self, client: tuple[Any, ...]) -> bool:
        hung_up = self._hung_up.get(client)
        return hung_up is not None and client not in self._sent and hung_up()

    def _prune(self) -> None:
        """Forget connections idle past the keep-alive timeout: without the server reporting
        lost connections, clients that leave without ``Connection: close`` would pile up."""
        horizon = time.monotonic() - self.keep_alive_timeout
        self._connections = {
            client: idle
            for client, idle in self._connections.items()
            if idle is None or idle > horizon
        }
        self._prune_at = max(_PRUNE_AT, 2 * len(self._connections))

    async def settle(self, accept_grace: float, deadline: float) -> None:
        """Wait until no request is running and no connection can send one.

        Waits at least `accept_grace` seconds, so that connections accepted just before the
        worker stopped accepting can deliver their first request, and never past `deadline`
        (a `time.monotonic()` value).
        """
        earliest = time.monotonic() + accept_grace
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
        drain.request_started(client)

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
            drain.request_finished(client, closing=closing)


_HTTP1 = frozenset(("1.0", "1.1"))
_CLOSE = (b"connection", b"close")


def _has_close(headers: Any) -> bool:
    """Whether `headers` (ASGI's name and value pairs, any case) say ``Connection: close``;
    run twice per request, so the length is compared before any name is lowered."""
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection" and b"close" in value.lower():
            return True
    return False
