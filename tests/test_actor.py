"""Who made a change: one rule for every write path, and history printed
without letting a recorded name forge lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from quart import Request, g
from sqlalchemy import insert

from quart_waffle import InvalidValueError, QuartWaffle
from quart_waffle.actor import checked_actor, escape_controls
from quart_waffle.limits import MAX_ACTOR_LENGTH
from quart_waffle.store import history_table
from tests.helpers import make_waffle

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ["ops\n1\t1\t2026-01-01\tadmin", "a\tb", "\x1b[2Jops", "nul\x00", "\ud800", "x\u2028y"]


@pytest.mark.parametrize("actor", HOSTILE)
async def test_update_and_reset_refuse_a_bad_actor(database_url: str, actor: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        with pytest.raises(InvalidValueError) as update:
            await waffle.update({"GREETING": "Hi"}, actor=actor)
        with pytest.raises(InvalidValueError) as reset:
            await waffle.reset(["GREETING"], actor=actor)
        assert list(update.value.errors) == list(reset.value.errors) == ["actor"]
        assert "control characters or lone surrogates" in update.value.errors["actor"]
        assert await waffle.history() == []
        assert await waffle.update({"GREETING": "Hi"}, actor="Zoë Ops") == 1
        [entry] = await waffle.history()
        assert entry.actor == "Zoë Ops"


def test_a_long_actor_is_cut_and_escaping_shows_every_control() -> None:
    assert checked_actor("a" * (MAX_ACTOR_LENGTH + 50)) == "a" * MAX_ACTOR_LENGTH
    assert (
        escape_controls("a\nb\tc\x1b\x85\u2028\ud800é") == "a\\x0ab\\x09c\\x1b\\x85\\u2028\\ud800é"
    )


def _quart(
    directory: Path, env: dict[str, str | bytes], *args: str
) -> subprocess.CompletedProcess[str]:
    """``quart waffle ...`` as a person runs it, on a one-setting app."""
    (directory / "actor_app.py").write_text(
        "from quart import Quart\n"
        "from quart_waffle import QuartWaffle\n"
        "app = Quart(__name__)\n"
        'app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}\n'
        'QuartWaffle(app, watchtype="none")\n'
    )
    environment: dict[str, str | bytes] = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "quart", "--app", "actor_app:app", "waffle", *args],
        cwd=directory,
        env=environment,  # bytes values are passed as they are
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=60,
        check=False,
    )


def test_cli_falls_back_to_cli_when_the_login_name_is_unusable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'waffle.db'}"
    env: dict[str, str | bytes] = {"WAFFLE_DATABASE_URL": url, "LOGNAME": b"ops\xff\n"}
    written = _quart(tmp_path, env, "set", "GREETING=Hi")
    assert (written.returncode, written.stdout) == (0, "revision 1\n"), written.stderr
    listed = _quart(tmp_path, {"WAFFLE_DATABASE_URL": url, "LOGNAME": "ops"}, "reset", "GREETING")
    assert listed.returncode == 0, listed.stderr
    history = _quart(tmp_path, {"WAFFLE_DATABASE_URL": url}, "history").stdout.splitlines()
    assert [line.split("\t")[3] for line in history] == ["cli:ops", "cli"]
    refused = _quart(tmp_path, {"WAFFLE_DATABASE_URL": url}, "set", "GREETING=x", "--actor", "a\tb")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: actor: may not contain control characters or lone surrogates (found \\x09)"
    ]


async def test_cli_history_escapes_control_characters(sqlite_url: str, tmp_path: Path) -> None:
    """A row recorded before actors were checked (or written by SQL) cannot
    forge history lines nor move the terminal's cursor."""
    waffle = make_waffle(sqlite_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "Hi\u2028there"})
        async with waffle.engine.begin() as connection:
            await connection.execute(
                insert(history_table).values(
                    revision=2,
                    key="GREETING",
                    old_value='"Hi"',
                    new_value='"x"',
                    changed_at=(await waffle.history())[0].changed_at,
                    actor="ops\n9\t9\t2026-01-01T00:00:00\tadmin\x1b[2J",
                )
            )
    result = _quart(tmp_path, {"WAFFLE_DATABASE_URL": sqlite_url}, "history")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "\tops\\x0a9\\x099\\x092026-01-01T00:00:00\\x09admin\\x1b[2J\tGREETING\t" in lines[0]
    assert lines[1].endswith('\tGREETING\t"Hello" -> "Hi\\u2028there"')


async def test_admin_refuses_a_bad_actor_from_the_callback(sqlite_url: str) -> None:
    async def authorize(request: Request) -> bool:
        g.waffle_actor = request.headers.get("X-User", "")
        return True

    waffle: QuartWaffle = make_waffle(sqlite_url, authorize=authorize)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        response = await client.put(
            "/waffle/api/settings/GREETING",
            json={"value": "Hi"},
            headers={"Sec-Fetch-Site": "same-origin", "X-User": "ops\x1b[2J"},
        )
        assert response.status_code == 422
        body = await response.get_json()
        assert "actor" in body["error"]["fields"], body
        assert await waffle.history() == []
