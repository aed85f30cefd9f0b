"""Workers' servers on a shared listening socket: one connection per wake-up, so that
connections queued together are shared among the workers woken for them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from functools import partial

import pytest

from quart_waffle.supervisor.accept import create_server


class _Counted(asyncio.Protocol):
    """Notes which server (`number`) accepted each connection, and closes them all at the end."""

    def __init__(
        self, made: asyncio.Queue[int], transports: list[asyncio.BaseTransport], number: int
    ) -> None:
        self.made = made
        self.transports = transports
        self.number = number

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.put_nowait(self.number)
        self.transports.append(transport)


class _Sockets:
    """A listening socket, its copies (one per worker) and clients, all closed at the end."""

    def __init__(self) -> None:
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen(16)
        self.opened: list[socket.socket] = [self.listening]
        self.made: asyncio.Queue[int] = asyncio.Queue()
        self.transports: list[asyncio.BaseTransport] = []

    def copy(self) -> socket.socket:
        self.opened.append(self.listening.dup())
        return self.opened[-1]

    def factory(self, number: int) -> _Counted:
        return _Counted(self.made, self.transports, number)

    def queue_connections(self, count: int) -> None:
        """Connections the kernel has completed, waiting in the accept queue."""
        for _ in range(count):
            self.opened.append(socket.create_connection(self.listening.getsockname()))

    async def accepted(self, count: int) -> list[int]:
        """Which server accepted each of the next `count` connections."""
        async with asyncio.timeout(10):
            return [await self.made.get() for _ in range(count)]

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        for sock in self.opened:
            sock.close()


@pytest.fixture(name="sockets")
def _sockets() -> Iterator[_Sockets]:
    sockets = _Sockets()
    yield sockets
    sockets.close()


async def test_servers_sharing_a_socket_take_one_queued_connection_each(
    sockets: _Sockets,
) -> None:
    sockets.queue_connections(3)
    # Three workers' copies of one socket, woken by the same readiness.
    servers = [
        await create_server(partial(sockets.factory, n), sock=sockets.copy()) for n in range(3)
    ]

    assert sorted(await sockets.accepted(3)) == [0, 1, 2]
    for server in servers:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0.05)  # let the transports close


async def test_a_closed_server_leaves_the_queue_to_the_others(sockets: _Sockets) -> None:
    closed = await create_server(lambda: sockets.factory(0), sock=sockets.copy())
    closed.close()
    serving = await create_server(lambda: sockets.factory(1), sock=sockets.copy())
    sockets.queue_connections(2)

    assert await sockets.accepted(2) == [1, 1]
    assert closed.sockets == ()
    serving.close()
    await asyncio.sleep(0.05)


async def test_a_worker_server_never_binds() -> None:
    with pytest.raises(ValueError, match="sockets its supervisor passed"):
        await create_server(asyncio.Protocol, "127.0.0.1", 0)
