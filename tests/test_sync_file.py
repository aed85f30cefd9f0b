"""The file channel against a hostile or broken filesystem: planted symbolic
links are never followed, only a regular file is read, and no file operation
can stall the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from quart_waffle.sync import (
    ChannelLostError,
    ChannelOptions,
    Hint,
    SyncRunner,
    encode_hint,
    open_channel,
)
from quart_waffle.sync.file import FileListener, FileNotifier, FileThread
from tests.helpers import make_waffle, serving
from tests.sync_helpers import until


def planted(tmp_path: Path, link: Path) -> Path:
    """A symbolic link at ``link`` to a file holding a secret; return the target."""
    target = tmp_path / "elsewhere" / "precious"
    target.parent.mkdir(exist_ok=True)
    target.write_text("7 precious\n")
    os.chmod(target, 0o600)
    link.symlink_to(target)
    return target


async def test_a_link_at_the_watcher_path_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "waffle.revision"
    target = planted(tmp_path, path)
    before = target.stat()
    listener, notifier = FileListener(str(path), 0.01), FileNotifier(str(path))
    with pytest.raises(ChannelLostError, match="symbolic link"):
        await listener.connect()
    await notifier.send(encode_hint(Hint(8, "a")))  # replaces the link itself
    assert not path.is_symlink()
    assert path.read_bytes() == b"8 a"
    assert target.read_text() == "7 precious\n"
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    await listener.connect()  # a regular file again
    await listener.close()
    await notifier.close()


async def test_links_at_predictable_temporary_names_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "waffle.revision"
    monkeypatch.setattr("quart_waffle.sync.file.secrets.token_hex", lambda _size: "guessed")
    targets = [
        planted(tmp_path, tmp_path / ".waffle.revision.guessed.tmp"),
        planted(tmp_path, tmp_path / "waffle.revision.guessed.tmp"),
    ]
    notifier = FileNotifier(str(path))
    with pytest.raises(FileExistsError):  # every name it could pick is taken: refused
        await notifier.send(encode_hint(Hint(8, "a")))
    assert all(target.read_text() == "7 precious\n" for target in targets)
    await notifier.close()


async def test_the_temporary_file_is_new_and_gone_after_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "waffle.revision"
    notifier = FileNotifier(str(path))
    for revision in range(3):
        await notifier.send(encode_hint(Hint(revision, "a")))
    await notifier.close()
    assert os.listdir(tmp_path) == ["waffle.revision"]
    assert stat.S_ISREG(path.lstat().st_mode)


@pytest.mark.timeout(30)
async def test_a_fifo_at_the_watcher_path_blocks_nothing(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "waffle.revision"
    os.mkfifo(path)
    waffle = make_waffle(sqlite_url, watchtype="file", watcher_file=str(path), check_interval=0.2)
    app = waffle.app
    assert app is not None

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    with caplog.at_level(logging.WARNING, logger="quart_waffle.sync"):
        async with serving(waffle):
            client = app.test_client()
            for _ in range(3):
                response = await asyncio.wait_for(client.get("/ping"), 2.0)
                assert await response.get_data(as_text=True) == "pong"
                await asyncio.sleep(0.1)
            health = waffle.health()
            assert not health.connected
            assert health.last_error is not None
            assert "a FIFO" in health.last_error
            assert stat.S_ISFIFO(path.lstat().st_mode)  # refused, left alone
    refusals = [r.getMessage() for r in caplog.records if "FIFO" in r.getMessage()]
    assert len(refusals) == 1, refusals


async def test_a_directory_at_the_watcher_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "waffle.revision"
    path.mkdir()
    listener, notifier = FileListener(str(path), 0.01), FileNotifier(str(path))
    with pytest.raises(ChannelLostError, match="a directory"):
        await listener.connect()
    with pytest.raises(IsADirectoryError):
        await notifier.send(encode_hint(Hint(1, "a")))
    assert os.listdir(tmp_path) == ["waffle.revision"]  # no temporary file left
    await listener.close()
    await notifier.close()


async def test_a_hung_file_operation_holds_its_thread_not_the_loop() -> None:
    release = threading.Event()
    thread = FileThread(timeout=0.2)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ChannelLostError, match="took over"):
            await thread.run(release.wait)  # a stat on a dead network mount
        assert ticks >= 5  # the loop ran all along
        with pytest.raises(ChannelLostError, match="hung"):
            await thread.run(os.getpid)  # refused at once, not queued behind it
    finally:
        release.set()
        ticker.cancel()
    await until(lambda: thread._running is not None and thread._running.done(), 2.0)
    assert await thread.run(os.getpid) == os.getpid()
    thread.close()


async def test_a_hung_watcher_file_is_a_lost_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hung_poll(*_arguments: object) -> None:
        release.wait()

    options = ChannelOptions(watcher_file=str(tmp_path / "waffle.revision"), timeout=0.2)

    async def catch_up() -> int:
        return 0

    runner = SyncRunner(open_channel("file", options), catch_up, lambda: 0, 60.0)
    await runner.start(watch=True)
    monkeypatch.setattr("quart_waffle.sync.file._poll", hung_poll)
    try:
        await until(lambda: not runner.health().connected, 2.0, "hang not noticed")
        assert "took over 0.2 s" in (runner.health().last_error or "")
    finally:
        release.set()
        await runner.stop()
