"""`--max-requests` on real processes: workers that served their requests are replaced by a
rolling replacement while clients keep connecting, and no request fails."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from harness.load import run_load
from tests.supervisor_apps.harness import ServerProcess

APP = "tests.supervisor_apps.testapp:app"
RECYCLED = r"Worker (\d+) served its max requests; replacing it"

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("keep_alive", [False, True])
async def test_workers_are_recycled_after_max_requests_under_load_with_no_failure(
    tmp_path: Path, keep_alive: bool
) -> None:
    args = ["-w", "2", "--max-requests", "150", "--max-requests-jitter", "50"]
    server = ServerProcess(tmp_path, APP, [*args, "--keep-alive-timeout", "1"], {})
    try:
        first = server.started_pids()
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=4, keep_alive=keep_alive, stop=stop)
        )
        # Three replacements: each of the first two workers, then one of their replacements.
        await asyncio.to_thread(server.wait_for_log, f"(?s){RECYCLED}.*{RECYCLED}.*{RECYCLED}", 90)
        stop.set()
        report = await load

        assert report.failures == [], report.failures[:3]
        recycled = {int(pid) for pid in re.findall(RECYCLED, server.log())}
        # with keep-alive the kernel may hand every connection to one worker, so only one
        # of the first two is sure to reach its max; every recycled worker served requests
        assert first & recycled
        answered = {sample.pid for sample in report.samples}
        assert len(recycled) >= 3
        assert recycled <= answered
    finally:
        server.close()
