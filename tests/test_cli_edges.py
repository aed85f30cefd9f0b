"""``quart waffle`` at its edges: a reader that goes away, usage errors, and
an export with secrets over a file someone else owns."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_waffle

ROOT = Path(__file__).resolve().parent.parent
APP = """
from quart import Quart
from quart_waffle import QuartWaffle
app = Quart(__name__)
app.config["WAFFLE_CONFS"] = {
    "GREETING": {"default": "Hello"},
    "API_KEY": {"default": "", "secret": True},
}
QuartWaffle(app, watchtype="none")
"""


def _shell(directory: Path, sqlite_url: str, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in bash with ``quart`` meaning ``quart --app edge_app:app``."""
    (directory / "edge_app.py").write_text(APP)
    quart = f"{sys.executable} -m quart --app edge_app:app"
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command.replace('quart ', quart + ' ', 1)}"],
        cwd=directory,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)]),
            "WAFFLE_DATABASE_URL": sqlite_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path, sqlite_url: str) -> None:
    assert _shell(tmp_path, sqlite_url, "quart waffle set GREETING=Hi").returncode == 0
    # `true` exits without reading: every write of the command meets a closed pipe
    for command in ("history", "list", "export"):
        result = _shell(tmp_path, sqlite_url, f"quart waffle {command} | true")
        assert result.stderr == "", (command, result.stderr)
        assert result.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "--limit", "0"], "Error: Invalid value for '--limit': must be"),
        (["import", "missing.json"], "Error: Invalid value for 'SOURCE': 'missing.json': No such"),
        (["set"], "Error: Missing argument 'KEY=VALUE...'."),
        (["sett", "GREETING=Hi"], "Error: No such command 'sett'."),
    ],
)
def test_usage_errors_are_one_line_and_status_1(
    tmp_path: Path, sqlite_url: str, args: list[str], message: str
) -> None:
    result = _shell(tmp_path, sqlite_url, "quart waffle " + " ".join(args))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message), result.stderr


def test_an_export_with_secrets_replaces_a_file_owned_by_another(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The export is a new file of ours renamed into place: the old file's
    owner (who could chmod it and read the secrets) does not carry over."""
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    assert (
        waffle.app.test_cli_runner().invoke(args=["waffle", "set", "API_KEY=hunter2"]).exit_code
        == 0
    )
    target = tmp_path / "export.json"
    target.write_text("old\n")
    target.chmod(0o666)
    if os.geteuid() == 0:
        os.chown(target, 65534, 65534)  # nobody
    before = target.stat().st_ino
    result = waffle.app.test_cli_runner().invoke(
        args=["waffle", "export", "--include-secrets", str(target)]
    )
    assert result.exit_code == 0, result.output
    after = target.stat()
    assert "hunter2" in target.read_text()
    assert (after.st_uid, stat.S_IMODE(after.st_mode)) == (os.geteuid(), 0o600)
    assert after.st_ino != before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export.json", "waffle.db"] + [
        name for name in ("waffle.db-shm", "waffle.db-wal") if (tmp_path / name).exists()
    ]
