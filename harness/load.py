"""A small HTTP/1.1 load generator on raw asyncio sockets, strict about failures.

Every request must get a complete ``200`` response on its first attempt. A keep-alive
connection that the server closes before any byte of the response arrived is what clients such
as urllib3 and httpx retry silently for idempotent requests; here it is a failure all the same,
counted apart as `LoadReport.stale_closes` so the report says which kind it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Sample:
    """One answered request: when, by which worker, on a connection opened for it or not."""

    started: float
    finished: float
    pid: int
    fresh: bool
    handled: float | None = None  # the server's monotonic clock in its handler, if it said

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass
class LoadReport:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stale_closes: int = 0

    @property
    def requests(self) -> int:
        return len(self.samples) + len(self.failures)

    def worst_latency(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The longest request that overlapped ``[start, end]`` (monotonic seconds)."""
        overlapping = [s.latency for s in self.samples if s.finished >= start and s.started <= end]
        return max(overlapping, default=0.0)


class _NoResponse(Exception):
    """The connection closed before any byte of the response."""


async def run_load(
    host: str,
    port: int,
    *,
    clients: int,
    keep_alive: bool,
    stop: asyncio.Event,
    path: str = "/whoami",
    report: LoadReport | None = None,
    ramp: float = 0.0,
) -> LoadReport:
    """Send GET `path` from `clients` concurrent connections until `stop` is set.

    Pass `report` to watch the figures while the load runs. The garbage collector is paused
    meanwhile: a full collection walks every sample, and at 50,000 samples it stopped this
    process for 50-60 ms, which the requests in flight then measured as the server's latency.
    """
    report = report or LoadReport()
    with _collector_paused():
        await asyncio.gather(
            *(
                _client(host, port, keep_alive, stop, path, report, ramp * i / clients)
                for i in range(clients)
            )
        )
    return report


class _CollectorPause:
    """The cyclic garbage collector disabled while any load runs in this process, and enabled
    again after the last one if it was enabled before the first."""

    def __init__(self) -> None:
        self.loads = 0
        self.was_enabled = True

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.loads == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
        self.loads += 1
        try:
            yield
        finally:
            self.loads -= 1
            if self.loads == 0 and self.was_enabled:
                gc.enable()


_collector_paused = _CollectorPause()


async def _client(
    host: str,
    port: int,
    keep_alive: bool,
    stop: asyncio.Event,
    path: str,
    report: LoadReport,
    delay: float,
) -> None:
    await asyncio.sleep(delay)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    request += "\r\n" if keep_alive else "Connection: close\r\n\r\n"
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stop.is_set():
        fresh = connection is None
        started = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                reader, writer = connection
                writer.write(request.encode())
                pid, handled, closing = await _read_response(reader)
        except (OSError, TimeoutError, _NoResponse, ValueError, asyncio.IncompleteReadError) as e:
            if isinstance(e, _NoResponse) and not fresh:
                report.stale_closes += 1
            report.failures.append(f"{type(e).__name__}: {e}")
            closing = True
            await asyncio.sleep(0.01)
        else:
            report.samples.append(Sample(started, time.monotonic(), pid, fresh, handled))
        if connection is not None and (closing or not keep_alive):
            await _close(connection[1])
            connection = None
    if connection is not None:
        await _close(connection[1])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float | None, bool]:
    """Read one response; return the answering pid, the ``handled`` time it gave if any, and
    whether the server closes."""
    status = await reader.readline()
    if not status:
        raise _NoResponse("connection closed before the response")
    if status.split()[1] != b"200":
        raise ValueError(f"status {status.decode().strip()}")
    length, closing = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection":
            closing = "close" in value.lower()
    answer = json.loads(await reader.readexactly(length))
    handled = answer.get("handled")
    return int(answer["pid"]), None if handled is None else float(handled), closing


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
