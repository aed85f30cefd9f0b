"""``quart waffle ...`` on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from quart_waffle import QuartWaffle
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

app = Quart(__name__)
app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
QuartWaffle(
    app,
    database_url=os.environ["CLI_TEST_DATABASE_URL"],
    create_tables=os.environ.get("CLI_TEST_CREATE_TABLES", "1") == "1",
    watchtype="none",
)
"""


def _quart_in(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`quart waffle ...` on a one-setting app written in ``directory``."""
    (directory / "cli_app.py").write_text(CLI_APP)
    path = os.pathsep.join([env.pop("PYTHONPATH", ""), str(directory), str(ROOT)]).lstrip(":")
    return subprocess.run(
        [sys.executable, "-m", "quart", "--app", "cli_app:app", "waffle", *args],
        cwd=directory,
        env={**os.environ, **env, "PYTHONPATH": path},
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
    result = _quart_in(tmp_path, {"CLI_TEST_DATABASE_URL": url}, "list")
    _assert_one_line_error(result, message)
    assert "pw" not in result.stderr


async def test_unknown_postgres_database_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"
    result = _quart_in(tmp_path, {"CLI_TEST_DATABASE_URL": url}, "list")
    _assert_one_line_error(result, 'database "no_such_database_here" does not exist')


def test_missing_driver_names_the_extra(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked" / "asyncpg"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n"
    )
    env = {
        "CLI_TEST_DATABASE_URL": "postgresql://127.0.0.1/x",
        "PYTHONPATH": str(tmp_path / "blocked"),
    }
    result = _quart_in(tmp_path, env, "list")
    _assert_one_line_error(result, "pip install quart-waffle[postgres]")


def test_missing_tables_without_create_tables_name_the_fix(
    tmp_path: Path, database_url: str
) -> None:
    env = {"CLI_TEST_DATABASE_URL": database_url, "CLI_TEST_CREATE_TABLES": "0"}
    result = _quart_in(tmp_path, env, "set", "GREETING=hi")
    _assert_one_line_error(result, "the settings tables do not exist")
    assert "WAFFLE_CREATE_TABLES" in result.stderr
