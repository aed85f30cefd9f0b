"""A small HTTP/1.1 client on raw asyncio streams: keep-alive connections, one request at
a time each, and a one-shot request on a new connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from typing import Any, Self

from harness.ports import HOST


class HttpError(Exception):
    """A response that is not what was asked for (not 200, no length, not JSON)."""


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.server_closes = False
        """Whether the last response said ``Connection: close`` (Hypercorn does so after
        `keep_alive_max_requests`, 1,000 by default): open another connection to go on."""

    @classmethod
    async def open(cls, port: int, within: float = 5.0) -> Self:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        """This end's port: what the server sees as the peer's."""
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        within: float = 10.0,
    ) -> tuple[int, bytes]:
        """Send one request and read its response: (status, body)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        async with asyncio.timeout(within):
            return await self._response()

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        self.server_closes = headers.get("connection", "").lower() == "close"
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, b"".join(chunks)
                chunks.append(chunk[:-2])
        if headers.get("connection", "").lower() == "close":
            return status, await self.reader.read()
        raise HttpError("response without a length")

    async def get_json(self, path: str, within: float = 10.0) -> Any:
        """``GET path``; the JSON body of a 200, else HttpError."""
        status, body = await self.request("GET", path, within=within)
        if status != 200:
            raise HttpError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def close_all(connections: list[Connection]) -> None:
    """Close every connection, at once."""
    await asyncio.gather(*(connection.close() for connection in connections))


async def http_request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    within: float = 5.0,
) -> tuple[int, bytes]:
    """One request on a new connection to 127.0.0.1:``port`` (``body``, when given, sent as
    JSON), answered ``within`` seconds: (status, body)."""
    payload = b"" if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    async with asyncio.timeout(within):
        connection = await Connection.open(port)
        try:
            return await connection.request(method, path, body=payload, headers=sent)
        finally:
            await connection.close()


async def http_get(port: int, path: str, within: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on a new connection to 127.0.0.1:``port``: (status, body)."""
    return await http_request(port, "GET", path, within=within)
