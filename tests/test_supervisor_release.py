"""`--release-link`: each generation runs the release directory the link named when its reload
started; a swapped link and a reload change the answer, and a failed release rolls the slots
it replaced back to the previous release, though the link names the failed one."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from harness.load import LoadReport, run_load
from quart_waffle.supervisor.release import ReleaseError, Releases
from tests.supervisor_apps.harness import ServerProcess, whoami

APP_SOURCE = """
import os

from quart import Quart

RELEASE = {release!r}
{extra}
app = Quart(__name__)


@app.get("/whoami")
async def whoami():
    return {{"pid": os.getpid(), "release": RELEASE, "cwd": os.getcwd()}}
"""
# The third release starts once, then every further start of it fails.
FAILS_AFTER_ONE_START = """
_starts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starts")
with open(_starts, "a") as _file:
    _file.write("x")
if os.path.getsize(_starts) > 1:
    raise RuntimeError("release 3 is broken")
"""


def make_release(root: Path, name: str, extra: str = "") -> Path:
    directory = root / "releases" / name
    directory.mkdir(parents=True)
    (directory / "release_app.py").write_text(APP_SOURCE.format(release=name, extra=extra))
    return directory


def point(link: Path, target: Path) -> None:
    """Swap the link atomically, as a deploy does."""
    temporary = link.with_name(link.name + ".new")
    os.symlink(target, temporary)
    os.replace(temporary, link)


async def answers(port: int, count: int = 8) -> list[dict[str, str]]:
    return [await whoami(port) for _ in range(count)]


@pytest.mark.timeout(150)
async def test_each_generation_runs_the_release_its_reload_resolved(tmp_path: Path) -> None:
    first = make_release(tmp_path, "1")
    second = make_release(tmp_path, "2")
    third = make_release(tmp_path, "3", FAILS_AFTER_ONE_START)
    link = tmp_path / "current"
    point(link, first)
    args = ["-w", "2", "--release-link", str(link), "--keep-alive-timeout", "1"]
    # the supervisor's own directory holds no app: workers import it from the release
    server = ServerProcess(tmp_path, "release_app:app", args, {}, cwd=tmp_path)
    stop = asyncio.Event()
    load: asyncio.Task[LoadReport] | None = None
    try:
        assert f"Generation 0 runs the code in {first} (via {link})" in server.log()
        assert {(a["release"], a["cwd"]) for a in await answers(server.port)} == {("1", str(first))}
        load = asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=2, keep_alive=False, stop=stop)
        )

        point(link, second)
        reloaded = await server.reload()
        assert reloaded.returncode == 0, reloaded.output
        assert f"reload 1 done (code: {second}): workers" in reloaded.output
        assert {a["release"] for a in await answers(server.port)} == {"2"}

        point(link, third)  # its first worker starts, its second fails
        failed = await server.reload()
        assert failed.returncode == 1, failed.output
        assert "release 3 is broken" in failed.output
        assert f"rolled back 1 replaced worker(s) to generation 1 (code: {second})" in (
            failed.output
        )
        stop.set()
        report = await load
        assert report.failures == [], report.failures[:3]
        # the link still names release 3, yet every worker runs release 2
        assert link.readlink() == third
        assert {(a["release"], a["cwd"]) for a in await answers(server.port)} == {
            ("2", str(second))
        }
        assert re.search(rf"Generation 2 runs the code in {re.escape(str(third))}", server.log())
    finally:
        stop.set()
        if load is not None:
            await asyncio.gather(load, return_exceptions=True)
        server.close()


def test_a_generation_keeps_its_directory_once_resolved(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    link = tmp_path / "current"
    point(link, one)
    releases = Releases(str(link))
    assert releases.directory(0) == str(one)
    point(link, two)
    assert releases.directory(0) == str(one)  # a replacement of generation 0
    assert releases.directory(1) == str(two)
    assert releases.origin(0) == str(one)
    assert releases.origin(5) is None
    point(link, tmp_path / "missing")
    with pytest.raises(ReleaseError, match="is not a directory"):
        releases.directory(2)
    assert Releases(None).directory(3) is None
