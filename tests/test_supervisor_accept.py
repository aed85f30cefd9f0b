"""Workers' servers on a shared listening socket: one connection per wake-up, so that
connections queued together are shared among the workers woken for them; uvloop's own server
for plain TCP, listening again with the backlog the socket already has."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from quart_waffle.supervisor.accept import (
    SharedSocketServer,
    create_server,
    native_arguments,
)
from quart_waffle.supervisor.tcpinfo import listen_backlog
from quart_waffle.supervisor.worker import WORKER_CLASSES
from tests.supervisor_apps.harness import ServerProcess


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


@pytest.fixture(name="certificate", scope="module")
def _certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made by openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def _pending_handshake(
    sockets: _Sockets, certificate: tuple[Path, Path]
) -> tuple[SharedSocketServer, socket.socket]:
    """A TLS server that has accepted a client which has not said hello yet, and that client."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = await create_server(
        lambda: sockets.factory(0), sock=sockets.copy(), ssl=context, ssl_handshake_timeout=3600
    )
    sockets.queue_connections(1)
    for _ in range(100):  # until the server has accepted it
        await asyncio.sleep(0.01)
        if server._connecting:
            break
    assert server._connecting
    return server, sockets.opened[-1]


async def test_a_tls_handshake_under_way_when_accepting_stops_is_finished(
    sockets: _Sockets, certificate: tuple[Path, Path]
) -> None:
    server, client = await _pending_handshake(sockets, certificate)
    server.close()  # its hello comes after the server stopped accepting
    trusting = ssl.create_default_context()
    trusting.check_hostname = False  # a test certificate, with no subject alternative name
    trusting.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection(
        sock=client, ssl=trusting, server_hostname="127.0.0.1"
    )
    async with asyncio.timeout(10):
        assert await sockets.made.get() == 0  # handed to its protocol, to be served
        await server.wait_closed()
        for transport in sockets.transports:  # TLS closes over the event loop
            transport.close()
        writer.close()
        await writer.wait_closed()


async def test_closing_drops_a_connection_still_in_its_tls_handshake(
    sockets: _Sockets, certificate: tuple[Path, Path]
) -> None:
    server, idle = await _pending_handshake(sockets, certificate)  # it never says hello
    server.close()
    async with asyncio.timeout(10):  # the grace, not the hour the handshake may take
        await server.wait_closed()
    idle.settimeout(10)
    assert idle.recv(1) == b""  # closed by the server
    assert sockets.made.empty()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("worker_class", sorted(WORKER_CLASSES))
async def test_a_tls_worker_drains_despite_a_client_that_never_handshakes(
    tmp_path: Path, certificate: tuple[Path, Path], worker_class: str
) -> None:
    cert, key = certificate
    server = ServerProcess(
        tmp_path,
        "tests.supervisor_apps.testapp:app",
        [
            *("-w", "1", "-k", worker_class, "--graceful-timeout", "5"),
            *("--certfile", str(cert), "--keyfile", str(key)),
        ],
        {},
    )
    try:
        old = server.wait_for_log(r"Serving with workers \[(\d+)\]").group(1)
        with socket.create_connection(("127.0.0.1", server.port)) as idle:
            # the only worker, idle, accepts it at once and waits for its hello
            await asyncio.sleep(0.5)
            reloaded = await server.reload(via_pid_file=True)
            assert reloaded.returncode == 0, reloaded.output
            log = server.log()
            assert re.search(rf"Worker {old} drained \(exit code 0\)", log), log
            assert "still running after the graceful timeout" not in log
            idle.settimeout(10)
            try:
                left = idle.recv(1)
            except ConnectionResetError:
                left = b""
            assert left == b""  # closed by the old worker, never served
    finally:
        server.close()


def test_the_backlog_of_a_listening_socket_is_read_from_the_kernel() -> None:
    with (
        socket.socket() as listening,
        socket.socket() as idle,
        socket.socket(socket.AF_UNIX) as unix,
    ):
        listening.bind(("127.0.0.1", 0))
        listening.listen(37)
        idle.bind(("127.0.0.1", 0))
        assert listen_backlog(listening) == 37
        assert listen_backlog(idle) is None  # not listening
        assert listen_backlog(unix) is None


def test_only_uvloop_serves_plain_tcp_itself_with_the_sockets_backlog() -> None:
    import uvloop

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(37)
        loops = asyncio.new_event_loop(), uvloop.new_event_loop()
        try:
            plain, native = (native_arguments(loop, sock=listening, backlog=1024) for loop in loops)
            tls = native_arguments(loops[1], sock=listening, ssl=ssl.create_default_context())
        finally:
            for loop in loops:
                loop.close()
    assert plain is None
    assert native == {"sock": listening, "backlog": 37}
    assert tls is None


@pytest.mark.parametrize("native_accept", [False, True])
def test_a_uvloop_worker_serves_plain_tcp_natively_only_when_asked(native_accept: bool) -> None:
    import uvloop

    from quart_waffle.supervisor.accept import NativeServer
    from quart_waffle.supervisor.worker import Control, WorkerSpec

    async def served_by() -> type[asyncio.AbstractServer]:
        spec = WorkerSpec("app:app", -1, [], [], {}, native_accept=native_accept)
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        with theirs, socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen(16)
            Control(reader, writer, spec).track_servers()
            with listening.dup() as served:  # closed here if the server leaves it open
                server = await asyncio.get_running_loop().create_server(
                    asyncio.Protocol, sock=served
                )
                server.close()
                await server.wait_closed()
        writer.close()
        return type(server)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kind = runner.run(served_by())
    assert kind is (NativeServer if native_accept else SharedSocketServer)
