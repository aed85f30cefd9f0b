"""What the supervisor does when things go wrong: slow requests, broken deploys, dead workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.load import run_load
from tests.supervisor_apps.harness import ServerProcess

APP = "tests.supervisor_apps.testapp:app"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(name="flags")
def _flags(tmp_path: Path) -> dict[str, Path]:
    return {
        "WAFFLE_TEST_BROKEN": tmp_path / "broken",
        "WAFFLE_TEST_STARTUP_FAILS": tmp_path / "startup-fails",
        "WAFFLE_TEST_RELEASE": tmp_path / "release",
    }


@pytest.fixture(name="server")
def _server(tmp_path: Path, flags: dict[str, Path]) -> Iterator[ServerProcess]:
    env = {name: str(path) for name, path in flags.items()}
    args = ["-w", "2", "--graceful-timeout", "5", "--keep-alive-timeout", "1"]
    server = ServerProcess(tmp_path, APP, args, env)
    yield server
    server.close()


async def _get(port: int, path: str) -> tuple[bytes, bytes]:
    """One request on its own connection; returns the response head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return head, await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


async def _pids_answering(port: int, requests: int = 20) -> set[int]:
    bodies = await asyncio.gather(*(_get(port, "/whoami") for _ in range(requests)))
    return {int(json.loads(body)["pid"]) for _, body in bodies}


async def _every_worker(port: int, workers: int = 2) -> set[int]:
    """The pids of all workers: the kernel does not spread connections evenly."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < workers:
        assert time.monotonic() < deadline, f"only {seen} answered"
        seen |= await _pids_answering(port)
    return seen


async def test_request_in_flight_survives_reload(
    server: ServerProcess, flags: dict[str, Path]
) -> None:
    held = asyncio.create_task(_get(server.port, "/hold"))
    await asyncio.sleep(0.5)
    reload = asyncio.create_task(server.reload())
    # Both old workers are draining, so whichever holds the request is.
    await asyncio.to_thread(server.wait_for_log, r"draining worker(?:.|\n)*draining worker")
    await asyncio.sleep(0.5)
    flags["WAFFLE_TEST_RELEASE"].touch()
    head, _ = await held
    reloaded = await reload

    assert reloaded.returncode == 0, reloaded.output
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head.lower()


async def test_broken_version_leaves_old_workers_serving(
    server: ServerProcess, flags: dict[str, Path]
) -> None:
    before = await _every_worker(server.port)
    for flag, reason in [
        (flags["WAFFLE_TEST_BROKEN"], "this version is broken"),
        (flags["WAFFLE_TEST_STARTUP_FAILS"], "startup failed on purpose"),
    ]:
        flag.touch()
        reloaded = await server.reload()
        flag.unlink()

        assert reloaded.returncode == 1
        assert reason in reloaded.output
        # the worker's whole traceback reaches the person reloading, down to the raise
        assert "  Traceback (most recent call last):" in reloaded.output
        assert 'testapp.py", line' in reloaded.output
        assert f"  RuntimeError: {reason}" in reloaded.output
        # exactly the same workers keep serving
        assert await _every_worker(server.port) == before
    # each failed worker was let finish writing its traceback before it was reaped
    assert server.log().count("RuntimeError: this version is broken\n") == 1

    fixed = await server.reload()
    assert fixed.returncode == 0, fixed.output
    assert not await _pids_answering(server.port) & before


async def test_killed_worker_is_replaced_while_others_serve(server: ServerProcess) -> None:
    before = await _every_worker(server.port)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    stop = asyncio.Event()
    load = asyncio.create_task(
        run_load("127.0.0.1", server.port, clients=2, keep_alive=False, stop=stop)
    )
    await asyncio.to_thread(server.wait_for_log, rf"Worker {victim} died")
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while not seen - before:
        assert time.monotonic() < deadline, "no replacement answered"
        await asyncio.sleep(0.2)
        seen |= await _pids_answering(server.port)
    stop.set()
    report = await load

    assert report.failures == []
    assert victim not in seen


async def test_sigterm_drains_in_flight_requests(server: ServerProcess) -> None:
    slow = asyncio.create_task(_get(server.port, "/slow/1.5"))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    exit_code = await asyncio.to_thread(server.stop)
    head, _ = await slow

    assert exit_code == 0
    assert head.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 10
    with pytest.raises(ConnectionRefusedError):
        await _get(server.port, "/whoami")
