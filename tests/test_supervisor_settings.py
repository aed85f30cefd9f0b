"""Settings synchronisation and rolling reloads together: a new worker starts
at the store's latest revision, even one no message announced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from quart import Quart

from examples.app import app as demo_app
from quart_waffle import QuartWaffle
from tests.supervisor_apps.harness import ServerProcess, whoami


async def answers_by_pid(port: int, pids: int) -> dict[int, dict[str, object]]:
    """The first answer of each of ``pids`` distinct workers."""
    seen: dict[int, dict[str, object]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < pids:
        assert time.monotonic() < deadline, f"only {sorted(seen)} answered"
        for answer in await asyncio.gather(*(whoami(port) for _ in range(8))):
            seen.setdefault(int(str(answer["pid"])), answer)
    return seen


async def test_new_workers_start_at_the_latest_revision(tmp_path: Path) -> None:
    env = {
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path / 'waffle.db'}",
        "WAFFLE_WATCHTYPE": "file",
        "WAFFLE_WATCHER_FILE": str(tmp_path / "waffle.revision"),
        "WAFFLE_CHECK_INTERVAL": "600",  # no safety net during the test: only start-up loads
        "WAFFLE_INSTANCE_PATH": str(tmp_path),
    }
    server = ServerProcess(tmp_path, "examples.app:app", ["-w", "2"], env)
    try:
        old = await answers_by_pid(server.port, 2)
        assert {answer["revision"] for answer in old.values()} == {0}

        app = Quart(__name__)
        app.config["WAFFLE_CONFS"] = demo_app.config["WAFFLE_CONFS"]
        waffle = QuartWaffle(app, database_url=env["WAFFLE_DATABASE_URL"], watchtype="none")
        async with waffle.connected():  # commits without telling anyone
            revision = await waffle.update({"GREETING": "deployed with revision 1"})
        assert revision == 1
        assert {a["revision"] for a in (await answers_by_pid(server.port, 2)).values()} == {0}

        reloaded = await server.reload()
        assert reloaded.returncode == 0, reloaded.output
        new = await answers_by_pid(server.port, 2)
        assert not set(new) & set(old)
        for answer in new.values():
            assert answer["revision"] == 1
            assert isinstance(answer["settings"], dict)
            assert answer["settings"]["GREETING"] == "deployed with revision 1"
    finally:
        server.close()
