"""The fleet on the file channel, with real ``hypercorn`` servers on one
host sharing the SQLite file and the watcher file: every worker listed, a
write with ``wait`` reports all of them, and a killed worker (SIGKILL: no
clean shutdown) is shown gone, then forgotten, its record file deleted.
And one worker's record files are written in the order they were composed."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness import Deployment
from quart_waffle.fleet import PresenceRecord
from quart_waffle.fleet.files import FilePresence
from quart_waffle.sync.base import ChannelLostError
from quart_waffle.sync.registry import ChannelOptions
from tests.test_fleet_deploy import fleet_until, host_env, hosts, states, write


def record(revision: int) -> PresenceRecord:
    now = time.time()
    return PresenceRecord(
        "host-f/1/0",
        "host-f",
        1,
        now,
        "",
        "store",
        revision,
        now,
        "file",
        True,
        None,
        None,
        now,
        5.0,
    )


async def stored(presence: FilePresence, written: PresenceRecord) -> bool:
    """Whether ``presence`` took ``written``: False when refused for now."""
    try:
        await presence.publish(written)
    except ChannelLostError:
        return False
    return True


async def test_a_write_given_up_on_never_lands_after_a_newer_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record write the worker stopped waiting for (its time limit) still
    runs on its thread; a newer record written meanwhile must not be
    overwritten by it when it ends (here: refused until it ended, then
    retried as the reporter does)."""
    presence = FilePresence(ChannelOptions(watcher_file=str(tmp_path / "waffle.revision")))
    write_file, release, landed = presence._publish, threading.Event(), threading.Event()

    def held(written: PresenceRecord) -> None:
        if written.revision == 1:  # the older record: held, then landing
            release.wait(5)
            write_file(written)
            landed.set()
        else:
            write_file(written)

    monkeypatch.setattr(presence, "_publish", held)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await presence.publish(record(1))
    newer = await stored(presence, record(2))
    release.set()
    await asyncio.to_thread(landed.wait, 5)
    while not newer:
        await asyncio.sleep(0.01)
        newer = await stored(presence, record(2))
    (kept,) = await presence.read(forget_after=60, now=time.time())
    assert kept.revision == 2, "a record composed earlier overwrote a newer one"
    await presence.close()


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
