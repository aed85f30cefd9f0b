"""`quart-waffle serve --reload`: an edited source file rolls the workers (a burst of edits
once), other files do not, and no request fails meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from harness.load import LoadReport, run_load
from quart_waffle.supervisor.reloader import CodeFilter
from tests.supervisor_apps.harness import ServerProcess, whoami

APP_SOURCE = """
import os

from quart import Quart

VERSION = {version!r}
app = Quart(__name__)


@app.get("/whoami")
async def whoami():
    return {{"pid": os.getpid(), "version": VERSION}}
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "watched_app.py").write_text(APP_SOURCE.format(version=version))


async def versions(port: int, count: int = 6) -> set[str]:
    return {str((await whoami(port))["version"]) for _ in range(count)}


@pytest.mark.timeout(120)
async def test_an_edited_file_rolls_the_workers_once_with_no_failure(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    write_app(source, "1")
    server = ServerProcess(tmp_path, "watched_app:app", ["-w", "2", "--reload"], {}, cwd=source)
    stop = asyncio.Event()
    load: asyncio.Task[LoadReport] | None = None
    try:
        server.wait_for_log(r"Reloading on changes to \*\.py in ")
        assert await versions(server.port) == {"1"}
        load = asyncio.create_task(
            run_load("127.0.0.1", server.port, clients=3, keep_alive=True, stop=stop)
        )
        (source / "notes.txt").write_text("not code")  # not watched
        (source / "__pycache__").mkdir()
        (source / "__pycache__" / "stale.py").write_text("")  # an ignored directory
        await asyncio.sleep(1.5)
        assert "Code changed" not in server.log()

        write_app(source, "2")
        await asyncio.sleep(0.1)
        write_app(source, "3")  # the same burst: one reload
        await asyncio.to_thread(server.wait_for_log, r"reload 1 done", 90)
        await asyncio.sleep(1.5)  # room for a second reload, which must not come
        stop.set()
        report = await load

        assert report.failures == [], report.failures[:3]
        assert len(report.samples) > 50
        log = server.log()
        assert log.count("Code changed") == 1, log
        assert "watched_app.py" in log
        assert "reload 2" not in log
        assert await versions(server.port) == {"3"}
    finally:
        stop.set()
        if load is not None:
            await asyncio.gather(load, return_exceptions=True)
        server.close()


def test_the_filter_watches_source_files_only() -> None:
    default = CodeFilter()
    assert default(None, "/srv/app/app.py")
    assert not default(None, "/srv/app/README.md")
    assert not default(None, "/srv/app/.venv/lib/site.py")
    assert not default(None, "/srv/app/__pycache__/app.py")
    chosen = CodeFilter(["*.py", "*.html"], ["*_test.py", "*/migrations/*"])
    assert chosen(None, "/srv/app/templates/index.html")
    assert not chosen(None, "/srv/app/app_test.py")
    assert not chosen(None, "/srv/app/migrations/0001.py")


def test_reload_without_watchfiles_is_one_line(tmp_path: Path) -> None:
    hide = (
        "import sys; sys.modules['watchfiles'] = None; "
        "from quart_waffle.supervisor.cli import main; "
        "sys.exit(main(['serve', 'app:app', '--reload']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        "reload needs watchfiles, the reload extra: pip install 'quart-waffle[reload]'" in lines[0]
    )


def test_a_missing_reload_dir_is_one_line(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("quart-waffle")
    missing = tmp_path / "missing"
    done = subprocess.run(
        [command, "serve", "app:app", "--reload", "--reload-dir", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"quart-waffle: reload_dir {str(missing)!r}: no such directory (see --help)"
    ]
