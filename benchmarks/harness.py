"""What every benchmark needs: servers in their own process groups, a small
keep-alive HTTP client, one connection per worker, percentiles, and sections
that print their figures and degrade to "skipped: reason"."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REDIS_URL = os.environ.get("WAFFLE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "WAFFLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HYPERCORN = str(Path(sys.executable).parent / "hypercorn")

_running: dict[int, subprocess.Popen[bytes]] = {}


class Skipped(Exception):
    """A benchmark (or one cell of it) cannot run here; the message says why."""


@dataclass
class Section:
    """One part of the report: Markdown lines, notes, and plot data."""

    title: str
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Add a Markdown table and print it as it is measured."""
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        self.lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
        self.lines.append("")

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def skip(self, reason: str) -> None:
        print(f"  skipped: {reason}", flush=True)
        self.skipped = reason


def reachable(url: str) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation; honest with few samples)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(seconds, 0.50) * 1000,
        "p90": percentile(seconds, 0.90) * 1000,
        "p99": percentile(seconds, 0.99) * 1000,
        "max": max(seconds) * 1000,
        "mean": statistics.fmean(seconds) * 1000,
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


# Processes: every server runs in its own session, so it is stopped as a group.


class Server:
    """A server command (hypercorn, gunicorn, ...) in its own process group,
    output in ``log``; stopped with SIGTERM then SIGKILL after a deadline."""

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path = ROOT
    ) -> None:
        self.argv = list(argv)
        # the servers import examples/ and benchmarks/ from the checkout
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path, **env}
        self.log = log
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _running[self.process.pid] = self.process

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, tail: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        _stop_group(self.process, timeout)
        _running.pop(self.process.pid, None)


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure no worker of its group is left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


@atexit.register
def _stop_everything() -> None:
    for process in list(_running.values()):
        _stop_group(process, 5.0)
    _running.clear()


def worker_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the workers of a master process)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# A small HTTP/1.1 keep-alive client: one request at a time on one connection.


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, within: float = 5.0) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), within)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        within: float = 10.0,
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await asyncio.wait_for(self._response(), within)

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
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
        raise HttpError("response without a length")

    async def get_json(self, path: str, within: float = 10.0) -> Any:
        status, body = await self.request("GET", path, within=within)
        if status != 200:
            raise HttpError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def close_all(connections: Sequence[Connection]) -> None:
    await asyncio.gather(*(connection.close() for connection in connections))


async def wait_ready(server: Server, port: int, within: float) -> None:
    """Until ``GET /whoami`` answers 200, or raise :class:`Skipped` with the log's tail."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not server.alive():
            raise Skipped(f"server exited at start: {server.output(600)!r}")
        with contextlib.suppress(OSError, HttpError, asyncio.TimeoutError, ValueError):
            connection = await Connection.open(port, 1.0)
            try:
                await connection.get_json("/whoami", 5.0)
                return
            finally:
                await connection.close()
        await asyncio.sleep(0.1)
    raise Skipped(f"server not ready within {within:.0f} s: {server.output(600)!r}")


async def connect_per_worker(
    port: int, workers: int, within: float = 30.0, path: str = "/whoami"
) -> dict[int, Connection]:
    """One keep-alive connection per distinct worker pid.

    Workers accept from one shared socket, so the kernel decides who gets a
    connection: keep opening until each pid holds one (held connections do
    not stop a worker from accepting more, so this converges quickly).
    """
    found: dict[int, Connection] = {}
    spare: list[Connection] = []
    deadline = time.monotonic() + within
    try:
        while len(found) < workers:
            if time.monotonic() > deadline:
                raise Skipped(f"only {len(found)} of {workers} workers answered in {within} s")
            batch = await asyncio.gather(*(Connection.open(port) for _ in range(workers)))
            answers = await asyncio.gather(*(c.get_json(path) for c in batch))
            for connection, answer in zip(batch, answers, strict=True):
                pid = int(answer["pid"])
                if pid in found:
                    spare.append(connection)
                else:
                    found[pid] = connection
    except BaseException:
        await close_all(list(found.values()))
        raise
    finally:
        await close_all(spare)
    return found


# Databases: each run gets its own, so nothing of an earlier run (or of the
# test suite running beside us) is read.


def sqlite_url(directory: Path, name: str) -> str:
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return f"sqlite+aiosqlite:///{path}"


async def fresh_postgres(name: str) -> str:
    """Drop and create database ``name`` on the benchmark server; its URL.

    Raises :class:`Skipped` when PostgreSQL or asyncpg is not there."""
    if not reachable(POSTGRES_URL):
        raise Skipped(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    try:
        import asyncpg
    except ImportError:
        raise Skipped("asyncpg is not installed (pip install -e '.[postgres]')") from None
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_URL)
    return parts._replace(path=f"/{name}").geturl()


async def drop_postgres(name: str) -> None:
    import asyncpg

    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class BenchConfig:
    """What to run and how long: the defaults keep the whole suite to a few
    minutes on 2 cores."""

    settings: tuple[int, ...] = (1, 100, 1_000, 10_000)
    channels: tuple[str, ...] = ("redis", "file", "postgres")
    updates: int = 50
    workers: int = 4
    cell_budget: float = 20.0  # seconds of updates per (channel, settings) cell at most
    fwc_settings: tuple[int, ...] = (1, 100, 1_000, 10_000)
    fwc_updates: int = 50
    throughput_seconds: float = 2.0
    throughput_rounds: int = 8
    connections: int = 32
    reload_requests: int = 10_000  # at least, per server and connection mode
    reload_reloads: int = 3
    reload_max_seconds: float = 45.0
    results: Path = RESULTS


def workspace(config: BenchConfig, name: str) -> Path:
    """``results/work/<name>``, emptied: databases, watch files and server
    logs of this run, kept until the next one for a look after a failure."""
    directory = (config.results / "work" / name).resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory
