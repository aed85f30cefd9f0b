"""The extension's lifecycle: connected state, when settings_changed fires,
names a setting may not take, and the SQLite folder made at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from quart_waffle import (
    ConfigurationError,
    DeclarationError,
    QuartWaffle,
    Setting,
    settings_changed,
)
from tests.helpers import make_waffle

Changes = list[tuple[int, dict[str, Any]]]


def record(waffle: QuartWaffle) -> tuple[Changes, Any]:
    """Connect a receiver to ``waffle``'s app; return what it receives and it."""
    received: Changes = []

    async def on_change(sender: object, revision: int, changes: dict[str, Any]) -> None:
        received.append((revision, changes))

    settings_changed.connect(on_change, sender=waffle.app)
    return received, on_change


async def test_signal_fires_for_changes_made_while_serving(database_url: str) -> None:
    waffle = make_waffle(database_url)
    assert waffle.app is not None
    received, receiver = record(waffle)
    try:
        async with waffle.app.test_app():
            await waffle.update({"MAINTENANCE": True})
            other = make_waffle(database_url)
            async with other.connected():
                await other.update({"THEME": "dark"})
            await waffle.refresh()  # what the sync task does on a hint
    finally:
        settings_changed.disconnect(receiver, sender=waffle.app)
    assert received == [(1, {"MAINTENANCE": (False, True)}), (2, {"THEME": ("light", "dark")})]


async def test_signal_does_not_fire_at_start_nor_in_scripts(database_url: str) -> None:
    script = make_waffle(database_url)
    script_received, script_receiver = record(script)
    worker = make_waffle(database_url)
    assert worker.app is not None
    worker_received, worker_receiver = record(worker)
    try:
        async with script.connected():  # what every CLI command does
            await script.update({"GREETING": "stored before the worker starts"})
            await script.reset(["GREETING"])
            await script.update({"GREETING": "stored before the worker starts"})
        async with worker.app.test_app():
            # the worker loaded a stored value at start: not a change it should announce
            assert worker.get("GREETING") == "stored before the worker starts"
    finally:
        settings_changed.disconnect(script_receiver, sender=script.app)
        settings_changed.disconnect(worker_receiver, sender=worker.app)
    assert script_received == []
    assert worker_received == []


async def test_a_signal_receiver_may_update(database_url: str) -> None:
    waffle = make_waffle(database_url)
    assert waffle.app is not None

    async def follow(sender: object, revision: int, changes: dict[str, Any]) -> None:
        if "MAINTENANCE" in changes:
            await waffle.update({"THEME": "dark"}, actor="receiver")

    settings_changed.connect(follow, sender=waffle.app)
    try:
        async with waffle.app.test_app():
            await asyncio.wait_for(waffle.update({"MAINTENANCE": True}), 10)
            assert waffle.get("THEME") == "dark"
            assert waffle.revision == 2
    finally:
        settings_changed.disconnect(follow, sender=waffle.app)


async def test_not_started_is_one_clear_error(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url)
    for call in (
        waffle.update({"GREETING": "x"}),
        waffle.reset(["GREETING"]),
        waffle.refresh(),
        waffle.history(),
    ):
        with pytest.raises(RuntimeError, match="not connected: the app must be serving"):
            await call
    assert waffle.health().last_error == "not started"
    async with waffle.connected():
        with pytest.raises(RuntimeError, match="already started"):
            await waffle.start()
    with pytest.raises(RuntimeError, match="not connected"):
        await waffle.refresh()
    unbound = QuartWaffle()
    with pytest.raises(RuntimeError, match="call init_app"):
        _ = unbound.config


@pytest.mark.parametrize("key", ["SECRET_KEY", "DEBUG", "SERVER_NAME", "WAFFLE_WATCHTYPE"])
def test_a_setting_may_not_shadow_quarts_own_keys(key: str) -> None:
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}, key: {"default": "x"}}
    with pytest.raises(DeclarationError, match=f"settings {key} would replace"):
        QuartWaffle(app, watchtype="none")
    assert "waffle" not in app.extensions
    with pytest.raises(DeclarationError, match="SECRET_KEY"):
        QuartWaffle(Quart(__name__), settings=[Setting("SECRET_KEY", "x")])


async def test_default_store_creates_the_instance_folder(tmp_path: Path) -> None:
    app = Quart(__name__, instance_path=str(tmp_path / "fresh" / "instance"))
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
    waffle = QuartWaffle(app, watchtype="none")
    assert not (tmp_path / "fresh").exists()  # registering opens nothing
    async with waffle.connected():
        await waffle.update({"GREETING": "Hi"})
    assert (tmp_path / "fresh" / "instance" / "waffle.db").is_file()


async def test_unusable_sqlite_folder_is_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    directory = blocked / "data"
    waffle = make_waffle(f"sqlite:///{directory}/waffle.db")
    with pytest.raises(ConfigurationError) as caught:
        await waffle.start(watch=False)
    message = str(caught.value)
    assert str(directory) in message
    assert "WAFFLE_DATABASE_URL" in message
    assert "\n" not in message
    with pytest.raises(RuntimeError, match="not connected"):
        await waffle.refresh()


def test_a_setting_may_not_replace_a_key_the_app_configured() -> None:
    app = Quart(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql://real"
    app.config["WAFFLE_CONFS"] = {"SQLALCHEMY_DATABASE_URI": {"default": "sqlite://"}}
    with pytest.raises(DeclarationError, match="SQLALCHEMY_DATABASE_URI would replace the app's"):
        QuartWaffle(app, watchtype="none")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql://real"
    assert "waffle" not in app.extensions
    # without mirroring, app.config is never written: the key is the app's alone
    waffle = QuartWaffle(app, watchtype="none", mirror_config=False)
    assert waffle.get("SQLALCHEMY_DATABASE_URI") == "sqlite://"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql://real"
