"""The load generator does not pause for the garbage collector while it measures, and gives
the collector back as it found it, also when two loads overlap."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from harness.load import run_load

BODY = b'{"pid": 1}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture(name="port")
async def _port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture(name="collector", params=[True, False], ids=["enabled", "disabled"])
def _collector(request: pytest.FixtureRequest) -> Iterator[bool]:
    enabled: bool = request.param
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    yield enabled
    (gc.enable if was else gc.disable)()


async def test_the_collector_is_paused_during_loads_and_restored_after_the_last(
    port: int, collector: bool
) -> None:
    first, second = asyncio.Event(), asyncio.Event()
    loads = [
        asyncio.create_task(run_load("127.0.0.1", port, clients=2, keep_alive=k, stop=stop))
        for k, stop in ((True, first), (False, second))
    ]
    await asyncio.sleep(0.2)
    assert not gc.isenabled()
    first.set()
    one = await loads[0]
    assert not gc.isenabled(), "the second load still runs"
    second.set()
    other = await loads[1]
    assert gc.isenabled() == collector
    assert one.samples
    assert other.samples
    assert one.failures + other.failures == []
