"""The fleet on the file channel, with real ``hypercorn`` servers on one
host sharing the SQLite file and the watcher file: every worker listed, a
write with ``wait`` reports all of them, and a killed worker (SIGKILL: no
clean shutdown) is shown gone, then forgotten, its record file deleted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import Deployment
from tests.test_fleet_deploy import fleet_until, host_env, hosts, states, write


async def test_file_channel_and_a_killed_worker(sqlite_url: str, tmp_path: Path) -> None:
    # two servers on one host sharing the watcher file (hypercorn stops every
    # worker of a server when one dies, so the killed one is a server's only worker)
    run = {"WAFFLE_WATCHER_FILE": str(tmp_path / "run" / "waffle.revision")}
    # heartbeat 0.5 s: gone after 6 s, forgotten after 11 s
    env = host_env("file", sqlite_url, tmp_path, "host-f", WAFFLE_HEARTBEAT_INTERVAL="0.5", **run)
    async with hosts(env, log_dir=tmp_path) as (deployment,):
        single = Deployment(env, tmp_path / "single.log", workers=1, app="tests.sync_app:app")
        await single.start()
        try:
            pids = await deployment.worker_pids() | await single.worker_pids()
            await fleet_until(
                deployment.port,
                lambda f: (
                    set(states(f)) == {("host-f", pid) for pid in pids}
                    and set(states(f).values()) == {"ok"}
                ),
                15,
                "the three workers, ok",
            )
            written = await write(deployment.port, {"THEME": "dark"}, wait=10)
            ack = written["acknowledgement"]
            assert ack["complete"], ack
            assert ack["text"].startswith("applied by 3 of 3 workers in "), ack
            assert len(os.listdir(tmp_path / "run" / "waffle.revision.fleet")) == 3

            (killed,) = await single.worker_pids()
            os.kill(killed, signal.SIGKILL)
            await fleet_until(
                deployment.port,
                lambda f: states(f).get(("host-f", killed)) == "gone",
                15,
                "the killed worker shown gone",
            )
            answer = await fleet_until(
                deployment.port,
                lambda f: ("host-f", killed) not in states(f),
                15,
                "the killed worker forgotten",
            )
            assert [w["state"] for w in answer["workers"]] == ["ok", "ok"], answer
            assert len(os.listdir(tmp_path / "run" / "waffle.revision.fleet")) == 2
        finally:
            await single.stop()
