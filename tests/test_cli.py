"""``quart waffle ...`` on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from quart import Quart
from sqlalchemy import text

from harness import REDIS_URL
from quart_waffle import QuartWaffle
from quart_waffle.store import SettingsStore, create_engine
from tests.conftest import require
from tests.helpers import make_waffle

ROOT = Path(__file__).resolve().parent.parent


def run(waffle: QuartWaffle, *args: str) -> Result:
    assert waffle.app is not None
    result: Result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    return result


@pytest.fixture(name="waffle")
def _waffle(database_url: str) -> QuartWaffle:
    return make_waffle(database_url)


def test_set_get_list_history(waffle: QuartWaffle) -> None:
    result = run(waffle, "set", "MAX_ITEMS=42", "MAINTENANCE=false", "--actor", "ops")
    assert result.exit_code == 0, result.output
    assert result.output == "revision 1\n"
    assert run(waffle, "get", "MAX_ITEMS").output == "42\n"
    assert run(waffle, "get", "MAINTENANCE").output == "false\n"
    listing = run(waffle, "list").output
    assert "revision 1" in listing
    assert "MAX_ITEMS\tint\t42\t(revision 1)" in listing
    assert 'API_KEY\tstr\t"********"\t(revision 0)' in listing
    history = run(waffle, "history", "--key", "MAX_ITEMS").output
    assert "\tops\tMAX_ITEMS\t20 -> 42" in history


def test_secrets_are_masked_unless_revealed(waffle: QuartWaffle) -> None:
    assert run(waffle, "set", "API_KEY=hunter2").exit_code == 0
    assert run(waffle, "get", "API_KEY").output == '"********"\n'
    assert run(waffle, "get", "API_KEY", "--reveal").output == '"hunter2"\n'
    assert "hunter2" not in run(waffle, "history").output
    assert "hunter2" not in run(waffle, "export").output
    assert "hunter2" in run(waffle, "export", "--include-secrets").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "MAX_ITEMS=0"], "MAX_ITEMS: must be at least 1"),
        (["set", "MAX_ITEMS=many"], "MAX_ITEMS: must be an integer"),
        (["set", "MAINTENANCE=perhaps"], "MAINTENANCE: must be true or false"),
        (["set", "THEME=blue"], 'THEME: must be one of "light", "dark"'),
        (["set", "NOPE=1"], "NOPE: unknown setting"),
        (["set", "GREETING"], "is not KEY=VALUE"),
        (["get", "NOPE"], "NOPE: unknown setting"),
        (["history", "--key", "NOPE"], "NOPE: unknown setting"),
    ],
)
def test_bad_input_exits_non_zero_and_stores_nothing(
    waffle: QuartWaffle, args: list[str], message: str
) -> None:
    result = run(waffle, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert json.loads(run(waffle, "export").output)["revision"] == 0


def test_conflict_is_reported(waffle: QuartWaffle) -> None:
    assert run(waffle, "set", "GREETING=one").exit_code == 0
    result = run(waffle, "set", "GREETING=two", "--expect-revision", "0")
    assert result.exit_code == 1
    assert "GREETING (changed at revision 1)" in result.output


def test_export_then_import_round_trip(waffle: QuartWaffle, tmp_path: Path) -> None:
    assert run(waffle, "set", 'BANNER={"text": "Sale", "level": "warn"}').exit_code == 0
    exported = tmp_path / "settings.json"
    assert run(waffle, "export", str(exported)).exit_code == 0
    assert run(waffle, "reset", "BANNER").exit_code == 0
    assert run(waffle, "import", str(exported)).exit_code == 0
    assert json.loads(run(waffle, "get", "BANNER").output) == {"text": "Sale", "level": "warn"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"settings": {"MAX_ITEMS": 1, "THEME": "purple"}}', "THEME: must be one of"),
    ],
)
def test_import_rejects_bad_files_atomically(
    waffle: QuartWaffle, tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "bad.json"
    source.write_text(content)
    result = run(waffle, "import", str(source))
    assert result.exit_code == 1
    assert message in result.output
    assert run(waffle, "get", "MAX_ITEMS").output == "20\n"


def test_real_quart_command(sqlite_url: str, tmp_path: Path) -> None:
    environment = {**os.environ, "WAFFLE_DATABASE_URL": sqlite_url, "WAFFLE_WATCHTYPE": "none"}

    def quart(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "quart", "--app", "examples.app:app", "waffle", *args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert quart("set", "GREETING=Bonjour").stdout == "revision 1\n"
    assert quart("get", "GREETING").stdout == '"Bonjour"\n'
    failed = quart("set", "MAX_ITEMS=-1")
    assert failed.returncode == 1
    assert "MAX_ITEMS: must be at least 1" in failed.stderr


CLI_APP = """
import os
from quart import Quart
from quart_waffle import QuartWaffle

app = Quart(__name__, instance_path=os.environ.get("CLI_TEST_INSTANCE") or None)
app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
QuartWaffle(app)  # every option from the WAFFLE_* environment, as a worker's
"""


def _quart_in(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`quart waffle ...` on a one-setting app written in ``directory``."""
    (directory / "cli_app.py").write_text(CLI_APP)
    path = os.pathsep.join([env.pop("PYTHONPATH", ""), str(directory), str(ROOT)]).lstrip(":")
    return subprocess.run(
        [sys.executable, "-m", "quart", "--app", "cli_app:app", "waffle", *args],
        cwd=directory,
        env={"WAFFLE_WATCHTYPE": "none", **os.environ, **env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://host/db", "WAFFLE_DATABASE_URL=foo://host/db: unsupported database; use sqlite://"),
        ("mysql://user:pw@host/db", "WAFFLE_DATABASE_URL=mysql://***@host/db: unsupported"),
        ("not a url", "WAFFLE_DATABASE_URL=not a url: not a database URL"),
        ("postgresql://127.0.0.1:1/x", "settings database unavailable"),
    ],
)
def test_setup_errors_are_one_line(tmp_path: Path, url: str, message: str) -> None:
    result = _quart_in(tmp_path, {"WAFFLE_DATABASE_URL": url}, "list")
    _assert_one_line_error(result, message)
    assert "pw" not in result.stderr


async def test_unknown_postgres_database_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"
    result = _quart_in(tmp_path, {"WAFFLE_DATABASE_URL": url}, "list")
    _assert_one_line_error(result, 'database "no_such_database_here" does not exist')


def test_missing_driver_names_the_extra(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked" / "asyncpg"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n"
    )
    env = {
        "WAFFLE_DATABASE_URL": "postgresql://127.0.0.1/x",
        "PYTHONPATH": str(tmp_path / "blocked"),
    }
    result = _quart_in(tmp_path, env, "list")
    _assert_one_line_error(result, "pip install quart-waffle[postgres]")


def test_missing_tables_without_create_tables_name_the_fix(
    tmp_path: Path, database_url: str
) -> None:
    env = {"WAFFLE_DATABASE_URL": database_url, "WAFFLE_CREATE_TABLES": "false"}
    result = _quart_in(tmp_path, env, "set", "GREETING=hi")
    _assert_one_line_error(result, "the settings tables do not exist")
    assert "WAFFLE_CREATE_TABLES" in result.stderr


async def test_a_write_no_worker_would_hear_of_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    """The CLI resolves its channel as the workers do; when its watcher file is one
    no worker watches (another instance folder here), it refuses to write."""
    workers_instance = tmp_path / "instance"
    env = {"WAFFLE_DATABASE_URL": sqlite_url, "WAFFLE_WATCHTYPE": "file"}
    app = Quart(__name__, instance_path=str(workers_instance))
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
    worker = QuartWaffle(app, database_url=sqlite_url, watchtype="file", check_interval=60.0)
    async with app.test_app():
        elsewhere = {**env, "CLI_TEST_INSTANCE": str(tmp_path / "elsewhere")}
        refused = await asyncio.to_thread(_quart_in, tmp_path, elsewhere, "set", "GREETING=lost")
        _assert_one_line_error(refused, f"no worker watches {tmp_path / 'elsewhere'}")
        assert "--no-channel-check" in refused.stderr

        same = {**env, "CLI_TEST_INSTANCE": str(workers_instance)}
        written = await asyncio.to_thread(_quart_in, tmp_path, same, "set", "GREETING=heard")
        assert written.stdout == "revision 1\n", written.stderr
        for _ in range(250):  # 5 s, by the file alone: the periodic check is a minute away
            if worker.get("GREETING") == "heard":
                break
            await asyncio.sleep(0.02)
        assert worker.get("GREETING") == "heard"

        forced = await asyncio.to_thread(
            _quart_in, tmp_path, elsewhere, "set", "GREETING=forced", "--no-channel-check"
        )
        assert forced.stdout == "revision 2\n", forced.stderr


def test_an_export_with_secrets_is_private(waffle: QuartWaffle, tmp_path: Path) -> None:
    assert run(waffle, "set", "API_KEY=hunter2").exit_code == 0
    fresh = tmp_path / "fresh.json"
    existing = tmp_path / "existing.json"
    existing.write_text("old\n")
    existing.chmod(0o644)
    for path in (fresh, existing):
        assert run(waffle, "export", "--include-secrets", str(path)).exit_code == 0
        assert "hunter2" in path.read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("secrets", [["--include-secrets"], []])
def test_an_export_never_follows_a_link(
    waffle: QuartWaffle, tmp_path: Path, secrets: list[str]
) -> None:
    target = tmp_path / "target"
    target.write_text("keep me\n")
    link = tmp_path / "export.json"
    link.symlink_to(target)
    result = run(waffle, "export", *secrets, str(link))
    assert result.exit_code == 1
    assert f"cannot write {link}: it is a symbolic link" in result.output
    assert target.read_text() == "keep me\n"


async def test_a_store_without_its_identity_table_names_the_fix(
    tmp_path: Path, database_url: str
) -> None:
    """Tables made by migrations written before the store identity: the one
    missing table is named as a setup mistake, with the fix."""
    engine = create_engine(database_url)
    try:
        await SettingsStore(engine).create_tables()
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE waffle_store"))
    finally:
        await engine.dispose()
    env = {"WAFFLE_DATABASE_URL": database_url, "WAFFLE_CREATE_TABLES": "false"}
    result = await asyncio.to_thread(_quart_in, tmp_path, env, "list")
    _assert_one_line_error(result, "the settings tables do not exist")


async def test_a_write_no_redis_subscriber_would_hear_of_is_refused(
    tmp_path: Path, sqlite_url: str
) -> None:
    """On Redis the command counts the channel's subscribers: with none (the
    workers listen on another channel, or none runs) it refuses to write."""
    require("Redis")
    channel = f"waffle-test-{os.urandom(6).hex()}"
    env = {
        "WAFFLE_DATABASE_URL": sqlite_url,
        "WAFFLE_WATCHTYPE": "redis",
        "WAFFLE_REDIS_URL": REDIS_URL,
        "WAFFLE_REDIS_CHANNEL": channel,
    }
    refused = await asyncio.to_thread(_quart_in, tmp_path, dict(env), "set", "GREETING=lost")
    _assert_one_line_error(refused, f"no worker listens on the redis channel '{channel}' at")
    assert "--no-channel-check" in refused.stderr
    forced = await asyncio.to_thread(
        _quart_in, tmp_path, dict(env), "set", "GREETING=first", "--no-channel-check"
    )
    assert forced.stdout == "revision 1\n", forced  # the refused write stored nothing
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
    worker = QuartWaffle(
        app,
        database_url=sqlite_url,
        watchtype="redis",
        redis_url=REDIS_URL,
        redis_channel=channel,
        check_interval=60.0,
    )
    async with app.test_app():
        assert worker.get("GREETING") == "first"
        heard = await asyncio.to_thread(_quart_in, tmp_path, dict(env), "set", "GREETING=heard")
        assert heard.stdout == "revision 2\n", heard
        deadline = asyncio.get_running_loop().time() + 2.0
        while worker.get("GREETING") != "heard":
            assert asyncio.get_running_loop().time() < deadline, "the worker never heard"
            await asyncio.sleep(0.01)
