"""`quart-waffle serve -c FILE`: the config file's values are used, the command line overrides
them, every key is checked as its option is, and a reload reads the file again (refusing what
only a restart can change)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.http import http_get
from harness.ports import free_port
from harness.processes import ROOT
from quart_waffle.supervisor import cli, configfile
from quart_waffle.supervisor.config import ServeConfig
from tests.supervisor_apps.harness import ServerProcess, quart_waffle, status

APP = "tests.supervisor_apps.testapp:app"

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(name="config_file")
def _config_file(tmp_path: Path) -> Path:
    return tmp_path / "quart-waffle.toml"


@pytest.fixture(name="server")
def _server(tmp_path: Path, config_file: Path) -> Iterator[ServerProcess]:
    port = free_port()
    config_file.write_text(
        f'app = "{APP}"\nbind = ["127.0.0.1:{port}"]\nworkers = 1\ngraceful_timeout = 2.5\n'
    )
    # No APP and no --bind: both from the file; -w 2 overrides the file's workers = 1.
    server = ServerProcess(tmp_path, None, ["-c", str(config_file), "-w", "2"], {}, bind=())
    try:
        yield server
    finally:
        server.close()


def test_the_file_is_used_and_the_command_line_overrides_it(server: ServerProcess) -> None:
    state = status(server)
    assert state["app"] == APP
    assert state["listening"] == [f"127.0.0.1:{server.port}"]
    assert state["workers_wanted"] == 2
    assert [w["state"] for w in state["workers"]] == ["serving", "serving"]


def test_a_reload_reads_the_file_again(server: ServerProcess, config_file: Path) -> None:
    text = config_file.read_text()
    config_file.write_text(text.replace("workers = 1", "workers = 3") + "max_surge = 2\n")
    # The command line's -w 2 still wins over the file; max_surge is the file's new value.
    code, output = _reload(server)
    assert code == 0, output
    assert "2 at a time, at most 2 extra" in output
    assert [w["generation"] for w in status(server)["workers"]] == [1, 1]

    config_file.write_text(text.replace(f"127.0.0.1:{server.port}", "127.0.0.1:1"))
    code, output = _reload(server)
    assert code == 1
    assert "only with a restart" in output
    assert "bind" in output

    config_file.write_text(text + "wokers = 2\n")
    code, output = _reload(server)
    assert code == 1
    assert "unknown key 'wokers' (did you mean 'workers'?)" in output
    state = status(server)
    assert state["generation"] == 1
    assert [w["generation"] for w in state["workers"]] == [1, 1]


def _reload(server: ServerProcess) -> tuple[int, str]:
    result = quart_waffle("reload", "--pid-file", server.pid_file)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wokers = 2\n", "unknown key 'wokers' (did you mean 'workers'?)"),
        ('access_logfile = "x"\n', "unknown key 'access_logfile' (did you mean 'accesslog'?)"),
        ("workers = 0\n", "workers: must be from 1 to 1024, got 0"),
        ('workers = "2"\n', "workers: must be an integer, got '2'"),
        ("workers = 2.5\n", "workers: must be an integer, got 2.5"),
        ("graceful_timeout = -1\n", "graceful_timeout: must be from 0.001 to 86400, got -1"),
        ("backlog = 70000\n", "backlog: must be from 1 to 65535, got 70000"),
        ("keep_alive_timeout = true\n", "keep_alive_timeout: must be a number, got True"),
        ('loglevel = "loud"\n', "loglevel: must be one of debug, info"),
        ("bind = [1]\n", "bind: must be a string or a list of strings"),
        ("workers = [", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(config_file: Path, text: str, message: str) -> None:
    config_file.write_text(text)
    result = quart_waffle("serve", APP, "-c", str(config_file))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"config file {config_file}: {message}" in result.stderr, result.stderr


def test_missing_file_and_missing_app(tmp_path: Path, config_file: Path) -> None:
    result = quart_waffle("serve", APP, "-c", str(tmp_path / "none.toml"))
    assert result.returncode == 1
    assert "none.toml: No such file or directory" in result.stderr
    config_file.write_text("workers = 2\n")
    result = quart_waffle("serve", "-c", str(config_file))
    assert result.returncode == 1
    assert "no app: give APP, or 'app' in the config file" in result.stderr


def reference_table() -> str:
    """The docs' table of config file keys, made from the keys, their checks, the command
    line's options and `ServeConfig`'s docstring."""
    doc = ServeConfig.__doc__ or ""
    arguments = doc[doc.index("Arguments:") : doc.index("Example::")]
    meanings = {
        match.group(1): " ".join(match.group(2).split())
        for match in re.finditer(
            r"^        (\w+): (.*?)(?=^        \w+: |\Z)", arguments, re.S | re.M
        )
    }
    meanings[configfile.PID_FILE] = "Write the supervisor's pid there (see --pid-file)."
    parser = cli._parser()
    serve = next(
        action.choices["serve"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    flags = {
        cli.ARGUMENT_FIELDS.get(action.dest, action.dest): (action.option_strings or ["APP"])[-1]
        for action in serve._actions
    }
    rows = ["| key | value | option | meaning |", "| --- | --- | --- | --- |"]
    for key, field in configfile.keys().items():
        restart = field in (*configfile.RESTART_ONLY, configfile.PID_FILE)
        meaning = meanings.get(field, "").replace("|", "\\|")
        meaning += " Restart only." if restart else ""
        kind = configfile.describe_kind(field)
        rows.append(f"| `{key}` | {kind} | `{flags.get(field, '-')}` | {meaning} |")
    return "\n".join(rows) + "\n"


def test_the_docs_table_of_keys_is_made_from_the_keys() -> None:
    docs = (ROOT / "docs" / "supervisor.md").read_text()
    start = docs.index("### Config file keys\n\n") + len("### Config file keys\n\n")
    table = docs[start : docs.index("\n### Signals", start)]
    expected = reference_table()
    assert table.strip() == expected.strip(), f"paste into docs/supervisor.md:\n{expected}"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"binds": ["127.0.0.1:1"]}, "bind"),
        ({"backlog": 10}, "backlog"),
        ({"timeout": 0.0}, "timeout"),  # workers started beating at the old pace
        ({"certfile": "cert.pem", "keyfile": "key.pem"}, "TLS turned on"),
    ],
)
def test_what_only_a_restart_changes(change: dict[str, Any], named: str) -> None:
    old = ServeConfig(app=APP)
    changes = configfile.restart_only_changes(old, dataclasses.replace(old, **change))
    assert len(changes) == 1
    assert changes[0].startswith(named)
    assert not configfile.restart_only_changes(old, dataclasses.replace(old, workers=3))


APP_MODULE = """
from quart import Quart

app = Quart(__name__)


@app.get("/which")
async def which() -> str:
    return {name!r}
"""


def test_a_reload_serves_the_app_the_file_names_now(tmp_path: Path, config_file: Path) -> None:
    for name in ("first", "second"):
        (tmp_path / f"{name}.py").write_text(APP_MODULE.format(name=name))
    port = free_port()
    config_file.write_text(f'app = "first:app"\nbind = "127.0.0.1:{port}"\n')
    server = ServerProcess(tmp_path, None, ["-c", str(config_file)], {}, bind=(), cwd=tmp_path)
    try:
        assert asyncio.run(http_get(port, "/which")) == (200, b"first")
        config_file.write_text(f'app = "second:app"\nbind = "127.0.0.1:{port}"\n')
        code, output = _reload(server)
        assert code == 0, output
        assert asyncio.run(http_get(port, "/which")) == (200, b"second")
        assert status(server)["app"] == "second:app"
    finally:
        server.close()
