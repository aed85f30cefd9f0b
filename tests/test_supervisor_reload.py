"""Rolling reloads under real load: no request fails and the pool never thins out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.load import LoadReport, run_load
from tests.supervisor_apps.harness import ServerProcess, accepting_floor

WORKERS = 4
HOST = "127.0.0.1"
# Two workers are replaced at a time, each ready before an old one drains: all four accept
# throughout, which the sampled lower bound `accepting_floor` reads as at least two.
SURGE = 2
MIN_ACCEPTING = 2


@pytest.fixture(name="server")
def _server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "WAFFLE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
    }
    args = ["-w", str(WORKERS), "--max-surge", str(SURGE), "--keep-alive-timeout", "2"]
    server = ServerProcess(tmp_path, "examples.app:app", args, env)
    yield server
    server.close()


@pytest.mark.timeout(240)
async def test_rolling_reloads_under_load_fail_no_request(server: ServerProcess) -> None:
    stop = asyncio.Event()
    loads = [
        asyncio.create_task(
            run_load(
                "127.0.0.1",
                server.port,
                clients=4,
                keep_alive=keep_alive,
                stop=stop,
                path="/whoami",
            )
        )
        for keep_alive in (False, True)
    ]
    await asyncio.sleep(1.0)
    reload_start = time.monotonic()
    first = asyncio.create_task(server.reload(via_pid_file=True))
    await asyncio.to_thread(server.wait_for_log, "reload 1: replacing")
    # Two requests made while a reload runs are merged into a single follow-up reload (asked
    # over the control socket from here: a reload may take less than starting two commands).
    second, third = await asyncio.gather(server.request_reload(), server.request_reload())
    reload_end = time.monotonic()
    await asyncio.sleep(1.0)
    stop.set()
    fresh, kept = await asyncio.gather(*loads)

    for reloaded, generation in [(await first, 1), (second, 2), (third, 2)]:
        assert reloaded.returncode == 0, reloaded.output
        assert f"reload {generation} done" in reloaded.output
    for report in (fresh, kept):
        assert report.failures == [], report.failures[:5]
        assert report.requests > 200
    samples = [*fresh.samples, *kept.samples]
    assert accepting_floor(samples, reload_start, reload_end) >= MIN_ACCEPTING
    assert not _pids(fresh, before=reload_start) & _pids(fresh, after=reload_end)


def _pids(report: LoadReport, *, before: float = float("inf"), after: float = 0.0) -> set[int]:
    return {s.pid for s in report.samples if s.finished < before and s.started > after}
