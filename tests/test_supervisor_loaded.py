"""What a fork server loaded (`loaded.LoadedCode`), in a process of its own: a module file
rewritten, one changed while it was loading, a new ``.pth`` file on its import path, and a
module from a zip archive rewritten, each count as changed; nothing changed counts as
nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import os, sys, time, zipfile
    from quart_waffle.supervisor.loaded import LoadedCode
    site, case = sys.argv[1], sys.argv[2]
    sys.path[:0] = [site, os.path.join(site, "bundle.zip")]
    started = time.time_ns()
    if case == "during":
        time.sleep(0.05)
        open(os.path.join(site, "late.py"), "w").write("X = 1\\n")
        import late
    else:
        import early
        import zipped
    loaded = LoadedCode.record(started)
    print("before:", loaded.first_changed())
    if case == "module":
        open(os.path.join(site, "early.py"), "a").write("Y = 2\\n")
    elif case == "pth":
        open(os.path.join(site, "extra.pth"), "w").write("/nowhere\\n")
    elif case == "zip":
        with zipfile.ZipFile(os.path.join(site, "bundle.zip"), "a") as bundle:
            bundle.writestr("other.py", "Z = 3\\n")
    print("after:", loaded.first_changed())
    """
)


@pytest.fixture(name="site")
def _site(tmp_path: Path) -> Path:
    import zipfile

    (tmp_path / "early.py").write_text("X = 1\n")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        bundle.writestr("zipped.py", "Z = 1\n")
    time.sleep(0.05)  # older than the probe's start
    return tmp_path


def probe(site: Path, case: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(site), case],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after = done.stdout.splitlines()
    return before.removeprefix("before: "), after.removeprefix("after: ")


def test_nothing_changed_is_nothing(site: Path) -> None:
    assert probe(site, "none") == ("None", "None")


@pytest.mark.parametrize(
    ("case", "changed"),
    [("module", "early.py"), ("pth", ""), ("zip", "bundle.zip")],
    ids=["module rewritten", "new .pth file", "zip archive rewritten"],
)
def test_a_change_since_it_loaded_counts(site: Path, case: str, changed: str) -> None:
    before, after = probe(site, case)
    assert before == "None"
    assert after == str(site / changed).removesuffix("/")


def test_a_file_changed_while_it_was_loading_counts_at_once(site: Path) -> None:
    before, after = probe(site, "during")
    assert before == after == str(site / "late.py")
