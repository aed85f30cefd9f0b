"""`python -m harness.check`, which `make test` runs first: it names every external thing
the suite needs, warns of nothing, and under CI=true fails on a missing one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check(**env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "harness.check"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_names_every_need_and_warns_of_nothing() -> None:
    result = check(WAFFLE_TEST_CHROMIUM="/nonexistent/chromium")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no RuntimeWarning of a module run twice
    for need in ("PostgreSQL", "Redis", "redis-server", "redis-cli", "pgbouncer", "git"):
        assert f"test needs: {need} at " in result.stdout, need
    assert "Chromium at /nonexistent/chromium" in result.stdout
    assert re.search(r"Missing: .*Chromium.*: the tests that need them are SKIPPED", result.stdout)


def test_under_ci_a_missing_need_fails() -> None:
    result = check(CI="true", WAFFLE_TEST_CHROMIUM="/nonexistent/chromium")
    assert result.returncode == 1
    assert re.search(r"CI=true and missing: .*Chromium.*: failing\.", result.stderr)
