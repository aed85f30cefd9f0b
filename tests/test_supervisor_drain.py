"""The drain middleware on its own: which responses close their connection, when a drain ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quart_waffle.supervisor.config import ServeConfig
from quart_waffle.supervisor.drain import (
    Connection,
    Drain,
    DrainMiddleware,
    Message,
    Receive,
    Scope,
    Send,
)
from quart_waffle.supervisor.worker import _hang_up_probe


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _request(app: DrainMiddleware, port: int, headers: list[Any] | None = None) -> Message:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "client": ("127.0.0.1", port),
        "headers": headers or [],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]


async def test_responses_close_their_connection_once_draining() -> None:
    drain = Drain(keep_alive_timeout=5.0)
    app = DrainMiddleware(_ok, drain)

    before = await _request(app, 1001)
    assert (b"connection", b"close") not in before["headers"]
    assert drain.live_connections() == 1

    drain.begin()
    after = await _request(app, 1001)
    assert (b"connection", b"close") in after["headers"]
    assert drain.live_connections() == 0
    assert drain.in_flight == 0


async def test_a_client_asking_to_close_leaves_no_live_connection() -> None:
    drain = Drain(keep_alive_timeout=5.0)
    await _request(DrainMiddleware(_ok, drain), 1002, [(b"connection", b"close")])

    assert drain.live_connections() == 0


async def test_settle_waits_for_idle_connections_until_the_keep_alive_timeout() -> None:
    drain = Drain(keep_alive_timeout=0.3)
    await _request(DrainMiddleware(_ok, drain), 1003)
    drain.begin()

    started = time.monotonic()
    await drain.settle(deadline=started + 5.0)
    assert 0.25 < time.monotonic() - started < 2.0


async def test_settle_never_passes_its_deadline() -> None:
    drain = Drain(keep_alive_timeout=60.0)
    drain.request_started(("127.0.0.1", 1004))

    started = time.monotonic()
    await drain.settle(deadline=started + 0.2)
    assert time.monotonic() - started < 1.0


async def test_a_connection_accepted_counts_until_its_request_is_answered_or_it_closes() -> None:
    drain = Drain(keep_alive_timeout=60.0)
    app = DrainMiddleware(_ok, drain)
    drain.connection_opened(("127.0.0.1", 1005))
    idle = drain.connection_opened(("127.0.0.1", 1006))
    assert drain.live_connections() == 2  # no request yet: it may still send one

    drain.begin()
    await _request(app, 1005)  # answered with Connection: close
    drain.connection_closed(("127.0.0.1", 1006), idle)
    assert drain.live_connections() == 0


async def test_a_connection_lost_during_its_request_is_not_counted_again() -> None:
    drain = Drain(keep_alive_timeout=60.0)
    opened = drain.connection_opened(("127.0.0.1", 1007))
    running = drain.request_started(("127.0.0.1", 1007))
    assert running is opened
    drain.connection_closed(("127.0.0.1", 1007), opened)
    drain.request_finished(("127.0.0.1", 1007), running, closing=False)

    assert drain.live_connections() == 0


async def test_a_new_connection_from_the_address_of_one_closing_is_kept() -> None:
    """A client may connect again from the same port before the server reports its previous
    connection lost: that report must not forget the new connection, which may still send its
    request."""
    drain = Drain(keep_alive_timeout=60.0)
    client = ("127.0.0.1", 1008)
    old = drain.connection_opened(client)
    finished = drain.request_started(client)
    new = drain.connection_opened(client)  # the old one's loss not reported yet
    drain.request_finished(client, finished, closing=True)
    drain.connection_closed(client, old)

    assert drain.live_connections() == 1
    drain.connection_closed(client, new)
    assert drain.live_connections() == 0


async def test_connections_that_went_away_silently_are_forgotten() -> None:
    drain = Drain(keep_alive_timeout=0.0)
    app = DrainMiddleware(_ok, drain)
    for port in range(3000):
        await _request(app, port)

    assert len(drain._connections) <= 1024


async def test_an_idle_connection_whose_client_hung_up_is_not_waited_for() -> None:
    """Real TCP connections: once a client closes its side, having sent nothing since its last
    request, it can send no request; one that sent bytes meanwhile still may."""
    accepted: asyncio.Queue[asyncio.BaseTransport] = asyncio.Queue()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer.transport)
        await reader.read()  # until the client's end of file
        await asyncio.sleep(0.5)  # idle in CLOSE_WAIT, as a server that noticed late
        writer.close()

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    drain = Drain(keep_alive_timeout=60.0, hung_up=_hang_up_probe)
    clients: list[tuple[tuple[str, int], Connection, asyncio.StreamWriter]] = []
    try:
        for _ in range(2):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            client = ("127.0.0.1", writer.get_extra_info("sockname")[1])
            connection = drain.connection_opened(client, await accepted.get())
            clients.append((client, connection, writer))
        assert drain.live_connections() == 2

        sending, connection, writer = clients[1]
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        connection.sent = True  # as the worker's protocol wrapper marks it
        for _, _, writer in clients:
            writer.write_eof()
        await asyncio.sleep(0.2)  # the FINs arrive

        assert drain.live_connections() == 1
        drain.connection_closed(sending, clients[1][1])
        assert drain.live_connections() == 0
    finally:
        for _, _, writer in clients:
            writer.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.6)


def test_min_active_and_max_surge_set_how_many_workers_are_replaced_at_once() -> None:
    assert ServeConfig(app="a:app", workers=4).reload_step == 1
    assert ServeConfig(app="a:app", workers=4, min_active=2).reload_step == 3
    assert ServeConfig(app="a:app", workers=4, max_surge=2).reload_step == 2
    assert ServeConfig(app="a:app", workers=4, min_active=3, max_surge=0).reload_step == 1
    assert ServeConfig(app="a:app", workers=1).reload_step == 1
    with pytest.raises(ValueError, match="a reload could replace no worker"):
        ServeConfig(app="a:app", workers=4, max_surge=0)
    with pytest.raises(ValueError, match="max_surge must be"):
        ServeConfig(app="a:app", workers=4, max_surge=-1)
    with pytest.raises(ValueError, match="max_requests must be from 0"):
        ServeConfig(app="a:app", max_requests=-1)
