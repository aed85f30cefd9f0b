"""A real ``hypercorn -w 2`` (and ``quart-waffle serve -w 2``) in an empty
folder: the default SQLite store makes its folder, every library log line
carries time, level and pid, and an unusable folder is reported by name
instead of a storm of tracebacks."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, ProcessGroup, free_port, wait_listening

APP = """
from quart import Quart
from quart_waffle import QuartWaffle

app = Quart(__name__)
app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
QuartWaffle(app)


@app.get("/")
async def index():
    return app.config["GREETING"]
"""
# "2026-11-25 15:04:05,123 WARNING [4242] quart_waffle.sync: redis sync failed, retrying: redis
# channel unreachable: ..."
LIBRARY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING \[(\d+)\] quart_waffle\.sync:"
    r" redis sync failed, retrying: redis channel unreachable",
    re.MULTILINE,
)


SERVERS = {
    "hypercorn": [sys.executable, "-m", "hypercorn"],
    "quart-waffle serve": [str(Path(sys.executable).parent / "quart-waffle"), "serve"],
}


def serve(folder: Path, port: int, server: str = "hypercorn", **environ: str) -> ProcessGroup:
    """``<server> -w 2 app:app`` started in ``folder`` (which holds app.py)."""
    (folder / "app.py").write_text(APP)
    group = ProcessGroup(
        [*SERVERS[server], "-w", "2", "-b", f"127.0.0.1:{port}", "app:app"],
        env={**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", **environ},
        log=folder / "server.log",
        cwd=folder,
    )
    group.start()
    return group


async def until(condition: str, check: object, within: float, server: ProcessGroup) -> None:
    deadline = time.monotonic() + within
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{condition} within {within} s:\n{server.output()}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("command", sorted(SERVERS))
async def test_first_run_in_an_empty_folder_logs_time_level_and_pid(
    tmp_path: Path, command: str
) -> None:
    # a channel nobody listens on: each worker logs a warning, and keeps serving
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    server = serve(tmp_path, port, command, WAFFLE_WATCHTYPE="redis", WAFFLE_REDIS_URL=unreachable)
    try:
        await wait_listening(port, 30, server.exited)

        def pids() -> set[str]:
            return set(LIBRARY_LINE.findall(server.output(200)))

        await until("a warning from each of 2 workers", lambda: len(pids()) == 2, 30, server)
    finally:
        server.stop()
    assert (tmp_path / "instance" / "waffle.db").is_file()
    assert "Traceback" not in server.output(1000)


async def test_an_unusable_folder_is_named_not_a_traceback_storm(tmp_path: Path) -> None:
    (tmp_path / "instance").write_text("a file where the instance folder should be")
    server = serve(tmp_path, free_port(), WAFFLE_WATCHTYPE="none")
    try:
        await until("the server gave up", lambda: server.exited() is not None, 30, server)
    finally:
        server.stop()
    output = server.output(100_000)
    assert f"cannot create the directory {tmp_path / 'instance'} for the SQLite store" in output
    assert "set WAFFLE_DATABASE_URL elsewhere" in output
    assert "[SQL" not in output
    assert "sqlalchemy" not in output  # the driver's chained errors were the storm
    # Quart's and Hypercorn's own report of a failed start-up remain: about 60 lines a worker
    assert len(output.splitlines()) < 200
