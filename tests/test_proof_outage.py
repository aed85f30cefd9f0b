"""A real database outage while serving: the workers of ``quart-waffle serve``
reach PostgreSQL through a TCP proxy that the test cuts (every connection
closed, new ones refused) and restores. Meanwhile reads answer 200 with the
last values, writes 503 with Retry-After, each worker warns once, a reload
fails while the old workers keep serving, and every worker catches up with
what was committed during the outage once the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from quart import Quart

from examples.app import app as demo_app
from harness import free_port, http_request
from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, make_waffle, serving
from tests.supervisor_apps.harness import ServerProcess

WORKERS = 2
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CAUGHT_UP_WITHIN = 15.0
"""The reconnection backoff is capped at 5 s; then one query."""


class CuttableProxy:
    """A TCP proxy from a free loopback port to ``target``; :meth:`cut` closes
    every connection and resets new ones, :meth:`restore` links them again.

    The listening socket stays open throughout: closing an asyncio server while
    a connection is being accepted leaks that connection's socket (Python 3.11).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._linking = False
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._linking = True

    async def cut(self) -> None:
        self._linking = False
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        # aborted transports end the pipes; cancelling their tasks would log errors
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ends = [writer]
        if not self._linking:
            self._tasks.discard(task)
            writer.transport.abort()
            return
        try:  # whatever ends this link (a cut, a refusal, a cancelled loop) closes both ends
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
            ends.append(upstream)
            if not self._linking:  # cut: reset it
                return
            self._links.update(ends)
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        except OSError:
            return
        finally:
            self._tasks.discard(task)
            for end in ends:
                self._links.discard(end)
                end.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture(name="proxy")
async def _proxy(postgres_url: str) -> AsyncIterator[tuple[CuttableProxy, str]]:
    """The proxy in front of the test's database, and the URL through it."""
    parts = urlsplit(postgres_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    await proxy.restore()
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield proxy, parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()
    finally:
        await proxy.close()


async def until_all(
    port: int, pids: set[int], check: Callable[[Any], bool], within: float = 10.0
) -> dict[int, Any]:
    """Poll ``/whoami`` on fresh connections (every read must be a 200) until
    the latest answer of every worker in ``pids`` passes ``check``; return them."""
    deadline = time.monotonic() + within
    latest: dict[int, Any] = {}
    while True:
        for status, body in await asyncio.gather(
            *(http_request(port, "GET", "/whoami") for _ in range(8))
        ):
            assert status == 200, body
            answer = json.loads(body)
            latest[answer["pid"]] = answer
        if pids <= latest.keys() and all(check(latest[pid]) for pid in pids):
            return latest
        assert time.monotonic() < deadline, f"not every worker of {sorted(pids)}: {latest}"
        await asyncio.sleep(0.05)


def greeting(text: str) -> Callable[[Any], bool]:
    return lambda answer: bool(answer["settings"]["GREETING"] == text)


async def raw_put(port: int, path: str, value: Any) -> tuple[int, dict[str, str], bytes]:
    """An authorized PUT on a new connection: (status, headers, body)."""
    payload = json.dumps({"value": value}).encode()
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode() + payload)
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
    top, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines)
    }
    return int(status_line.split()[1]), headers, body


SYNC_WARNINGS = ("channel lost", "channel unreachable", "catch-up failed", "could not notify")
"""The sync task's warnings about an outage (logged once per outage, not per retry)."""


def sync_warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(text in line for text in SYNC_WARNINGS)]


@pytest.mark.timeout(180)
async def test_database_outage_while_serving(
    proxy: tuple[CuttableProxy, str], postgres_url: str, tmp_path: Path
) -> None:
    cuttable, proxied_url = proxy
    env = {
        "WAFFLE_DATABASE_URL": proxied_url,
        "WAFFLE_WATCHTYPE": "postgres",
        "WAFFLE_CHECK_INTERVAL": "60",
        "WAFFLE_ADMIN_TOKEN": ADMIN_TOKEN,
        "WAFFLE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    args = ["-w", str(WORKERS), "--startup-timeout", "20", "--graceful-timeout", "3"]
    # the constructor waits for the workers: off the event loop, which runs the proxy
    server = await asyncio.to_thread(ServerProcess, tmp_path, "examples.app:app", args, env)
    try:
        pids = await _pids(server.port)
        status, _, body = await raw_put(server.port, "/waffle/api/settings/GREETING", "before")
        assert status == 200, body
        before = json.loads(body)["revision"]
        await until_all(server.port, pids, greeting("before"))
        log_before = len(server.log())

        await cuttable.cut()
        # reads stay 200 with the old values; writes are refused and store nothing
        for _ in range(4):
            answers = await until_all(server.port, pids, greeting("before"))
            assert {answer["revision"] for answer in answers.values()} == {before}
            status, headers, body = await raw_put(
                server.port, "/waffle/api/settings/GREETING", "during"
            )
            assert status == 503, body
            assert int(headers["retry-after"]) > 0
            assert json.loads(body)["error"]["code"] == "store_unavailable"
            await asyncio.sleep(1.0)
        # a reload now fails (its new workers cannot load); the old ones keep serving
        reload = asyncio.create_task(server.reload(via_pid_file=True))
        reads = 0
        while not reload.done():
            for status, body in await asyncio.gather(
                *(http_request(server.port, "GET", "/whoami") for _ in range(4))
            ):
                assert status == 200, body
                assert json.loads(body)["settings"]["GREETING"] == "before"
                reads += 1
        reloaded = await reload
        assert reloaded.returncode == 1, reloaded.output
        assert reads > 0
        answers = await until_all(server.port, pids, greeting("before"))
        assert {answer["revision"] for answer in answers.values()} == {before}
        # meanwhile another host, with its own way to the database, commits a change
        committed = await _commit_directly(postgres_url, tmp_path, "committed in the outage")
        warned = sync_warnings(server.log()[log_before:])
        assert 1 <= len(warned) <= WORKERS, "\n".join(warned)  # once per worker, not per retry

        await cuttable.restore()
        answers = await until_all(
            server.port, pids, greeting("committed in the outage"), CAUGHT_UP_WITHIN
        )
        assert {answer["revision"] for answer in answers.values()} == {committed}
        status, _, body = await raw_put(server.port, "/waffle/api/settings/GREETING", "after")
        assert status == 200, body
        await until_all(server.port, pids, greeting("after"))
    finally:
        await asyncio.to_thread(server.close)


async def _pids(port: int) -> set[int]:
    """Every worker's pid, once each has answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
        seen.update((await until_all(port, set(), lambda _answer: True)).keys())
    return seen


async def _commit_directly(database_url: str, tmp_path: Path, greeting: str) -> int:
    """Another host's write, on its own connection to the database."""
    app = Quart(__name__, instance_path=str(tmp_path / "direct"))
    app.config["WAFFLE_CONFS"] = demo_app.config["WAFFLE_CONFS"]
    waffle = QuartWaffle(app, database_url=database_url, watchtype="postgres")
    async with waffle.connected():
        return await waffle.update({"GREETING": greeting}, actor="other host")


async def test_one_warning_per_outage_however_many_requests(
    proxy: tuple[CuttableProxy, str], caplog: pytest.LogCaptureFixture
) -> None:
    cuttable, proxied_url = proxy
    waffle = make_waffle(
        proxied_url, watchtype="postgres", check_interval=60.0, admin_token=ADMIN_TOKEN
    )
    assert waffle.app is not None
    client = waffle.app.test_client()
    async with serving(waffle):
        with caplog.at_level(logging.WARNING, logger="quart_waffle"):
            await cuttable.cut()
            for _ in range(6):
                response = await client.put(
                    "/waffle/api/settings/GREETING", json={"value": "during"}, headers=AUTH
                )
                assert response.status_code == 503
                assert (await client.get("/waffle/api/settings", headers=AUTH)).status_code == 200
                await asyncio.sleep(0.3)  # the sync task retries meanwhile
            warned = [
                record.getMessage()
                for record in caplog.records
                if record.name.startswith("quart_waffle")
            ]
        await cuttable.restore()
    assert len(warned) == 1, warned
