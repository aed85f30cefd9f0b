"""The SQLite store's files hold secret values and session digests: only
their owner may read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from quart import Quart

from quart_waffle import QuartWaffle


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_store_and_its_folder_are_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which gave 0644 files
    try:
        app = Quart(__name__, instance_path=str(tmp_path / "instance"))
        app.config["WAFFLE_CONFS"] = {"API_KEY": {"default": "", "secret": True}}
        waffle = QuartWaffle(app, watchtype="none")
        async with waffle.connected():
            await waffle.update({"API_KEY": "hunter2"})
            files = [tmp_path / "instance" / name for name in ("waffle.db", "waffle.db-wal")]
            assert [_mode(path) for path in files] == [0o600, 0o600]
            assert _mode(tmp_path / "instance" / "waffle.db-shm") == 0o600
        assert _mode(tmp_path / "instance") == 0o700
    finally:
        os.umask(previous)


async def test_an_existing_folder_and_file_keep_their_modes(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir(mode=0o755)
    database = tmp_path / "shared" / "waffle.db"
    database.touch(mode=0o640)
    os.chmod(database, 0o640)
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
    waffle = QuartWaffle(app, watchtype="none", database_url=f"sqlite:///{database}")
    async with waffle.connected():
        await waffle.update({"GREETING": "Hi"})
    assert (_mode(tmp_path / "shared"), _mode(database)) == (0o755, 0o640)
