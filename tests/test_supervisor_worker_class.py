"""`--worker-class` on real processes: every server a worker can run (and the uvloop ones with
`--native-accept`) is rolled under load, with keep-alive clients and clients on a new
connection per request, and no request fails."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.load import LoadReport, run_load
from harness.processes import ROOT
from quart_waffle.supervisor.worker import UVLOOP_CLASSES, WORKER_CLASSES
from tests.supervisor_apps.harness import COMMAND, ServerProcess

APP = "tests.supervisor_apps.testapp:app"
SERVER_HEADERS = {"hypercorn": "hypercorn", "hypercorn-uvloop": "hypercorn", "uvicorn": "uvicorn"}

pytestmark = pytest.mark.timeout(180)


def _server_header(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/whoami")
        response = connection.getresponse()
        response.read()
        return response.getheader("server", "")
    finally:
        connection.close()


def test_every_worker_class_is_tested() -> None:
    assert set(SERVER_HEADERS) == set(WORKER_CLASSES)


@pytest.mark.parametrize(
    ("worker_class", "options"),
    [
        *((worker_class, ()) for worker_class in WORKER_CLASSES),
        *((worker_class, ("--native-accept",)) for worker_class in UVLOOP_CLASSES),
    ],
)
async def test_worker_class_rolls_under_load_with_no_failure(
    tmp_path: Path, worker_class: str, options: tuple[str, ...]
) -> None:
    args = ["-w", "2", "--worker-class", worker_class, "--keep-alive-timeout", "1", *options]
    server = ServerProcess(tmp_path, APP, args, {})
    try:
        assert _server_header(server.port).startswith(SERVER_HEADERS[worker_class])
        stop = asyncio.Event()
        reports = [LoadReport(), LoadReport()]
        loads = [
            asyncio.create_task(
                run_load(
                    "127.0.0.1",
                    server.port,
                    clients=3,
                    keep_alive=keep_alive,
                    stop=stop,
                    report=report,
                )
            )
            for keep_alive, report in zip((True, False), reports, strict=True)
        ]
        await asyncio.sleep(0.5)
        before = {sample.pid for report in reports for sample in report.samples}
        for _ in range(2):
            reloaded = await server.reload()
            assert reloaded.returncode == 0, reloaded.output
        cut = len(reports[1].samples)
        async with asyncio.timeout(30):  # a loaded machine may take a while to answer
            while len(reports[1].samples) < cut + 20:  # noqa: ASYNC110 (the load's own task)
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*loads)

        for report in reports:
            assert report.failures == [], report.failures[:3]
            assert report.requests > 50
        # the workers of the last generation answer, none of the first one
        after = {sample.pid for sample in reports[1].samples[cut:]}
        assert after
        assert not after & before
        assert _server_header(server.port).startswith(SERVER_HEADERS[worker_class])
    finally:
        server.close()


@pytest.mark.parametrize("worker_class", ["uvicorn", "hypercorn-uvloop"])
def test_a_failed_lifespan_startup_is_reported_with_its_traceback(
    tmp_path: Path, worker_class: str
) -> None:
    flag = tmp_path / "fails"
    flag.touch()
    command = [*COMMAND, "serve", APP, "-k", worker_class, "-b", "127.0.0.1:0"]
    env = {**os.environ, "WAFFLE_TEST_STARTUP_FAILS": str(flag)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert re.search(r"Cannot start: worker \d+ failed: \w+", done.stderr), done.stderr
    assert "startup failed on purpose" in done.stderr
