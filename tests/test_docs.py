"""The docs, run as a new user runs them: in an empty directory, with the package installed
from the checkout (a wheel, not the editable copy).

Conventions for code blocks in README.md and docs/*.md (keep them when editing the docs):

- Every ```python block must compile. Top-level ``await`` is allowed (such a block shows the
  body of an async function). A signature or other pseudo-code is fenced as ```text.
- A ```python block whose first line is a comment naming a Python file (``# app.py``) is that
  file; a block preceded by the line ``<!-- continues app.py -->`` is appended to it. Every
  such file is a program: it is run (``python app.py``) in an empty directory and must exit 0.
- The README's "Quickstart" section and the tutorial are run end to end: the app file, then
  the ```bash blocks line by line (comments dropped): ``pip install`` lines are what the
  session's wheel install already did; a server (``hypercorn``, ``quart-waffle serve``) is
  started in the background with 2 workers on a free port; every other command must exit 0,
  and after each ``waffle set KEY=value`` every worker must serve the new value.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ROOT, ProcessGroup, every_worker, free_port, wait_listening

# every test here shares one built wheel: keep them in one process when the suite runs in several
pytestmark = pytest.mark.xdist_group("installed-wheel")

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORKERS = 2
SERVERS = ("hypercorn", "quart-waffle")
BOUND = 10.0
"""Seconds within which every worker serves a value after `waffle set` (documented: at once)."""
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
CONTINUES = re.compile(r"<!-- continues (\S+) -->\s*$")
NAMED = re.compile(r"# (\S+\.py)\n")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, text, where it is, and the file it belongs to."""

    language: str
    text: str
    where: str
    file: str | None = None
    continues: bool = False


def blocks(path: Path, section: str | None = None) -> list[Block]:
    """The fenced blocks of ``path`` (of its ``## section`` only, when given)."""
    text = path.read_text()
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else None]
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        body = match.group(2)
        named = NAMED.match(body)
        continued = CONTINUES.match(before)
        file = continued.group(1) if continued else named.group(1) if named else None
        where = f"{path.relative_to(ROOT)}:{line}"
        found.append(Block(match.group(1), body, where, file, continued is not None))
    return found


def program_files(path: Path) -> dict[str, str]:
    """The files the python blocks of ``path`` name: {file name: source}."""
    files: dict[str, str] = {}
    for block in blocks(path):
        if block.language == "python" and block.file is not None:
            if block.continues:
                assert block.file in files, f"{block.where}: continues an unknown {block.file}"
                files[block.file] += "\n\n" + block.text
            else:
                files[block.file] = block.text
    return files


def python_blocks() -> Iterator[Block]:
    for path in DOCS:
        yield from (block for block in blocks(path) if block.language == "python")


@pytest.mark.parametrize("block", list(python_blocks()), ids=lambda block: block.where)
def test_python_block_compiles(block: Block) -> None:
    compile(block.text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# The installed package and an empty directory to use it in.


@dataclass(frozen=True)
class Installed:
    """The package installed from a wheel of the checkout into ``target``."""

    target: Path

    def env(self) -> dict[str, str]:
        """An environment that finds the installed copy first and no WAFFLE_* of the caller."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("WAFFLE_")}
        path = [str(self.target / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]
        env["PATH"] = os.pathsep.join(path)
        env["PYTHONPATH"] = str(self.target)
        return env


@pytest.fixture(scope="session", name="installed")
def _installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build a wheel of the checkout once per session and install it (no dependencies: the
    development environment has them) into a directory of its own."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    ignore = shutil.ignore_patterns(
        ".*", "build", "dist", "instance", "*.egg-info", "__pycache__", "results"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    wheels, target = base / "wheels", base / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, timeout=120)
    (wheel,) = wheels.glob("quart_waffle-*.whl")
    install = [*pip, "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, timeout=120)
    return Installed(target)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_the_installed_copy_is_what_runs(installed: Installed, tmp_path: Path) -> None:
    code = "import quart_waffle; print(quart_waffle.__file__)"
    done = run([sys.executable, "-c", code], tmp_path, installed.env())
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.target), done.stdout


@pytest.mark.parametrize("path", [p for p in DOCS if program_files(p)], ids=lambda p: p.name)
def test_programs_in_the_docs_run(path: Path, installed: Installed, tmp_path: Path) -> None:
    for name, source in program_files(path).items():
        (tmp_path / name).write_text(source)
    for name in program_files(path):
        done = run([sys.executable, name], tmp_path, installed.env())
        assert done.returncode == 0, f"{path.name}, {name}:\n{done.stderr}"


# Running a page's shell commands.


@dataclass
class Shell:
    """Runs the commands of a page in ``cwd``; servers in the background."""

    cwd: Path
    env: dict[str, str]
    served: Callable[[str], bytes]
    """The body ``GET /`` answers when GREETING is the given value."""
    server: ProcessGroup | None = None
    port: int = 0

    async def run(self, line: str) -> None:
        argv = shlex.split(line, comments=True)
        if not argv or argv[:2] == ["pip", "install"]:
            return  # the session's wheel is installed
        if argv[0] in SERVERS and "reload" not in argv:
            await self.start(argv)
            return
        done = await asyncio.to_thread(run, argv, self.cwd, self.env)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}\n{self.log()}"
        assert "Traceback" not in done.stderr, done.stderr
        for key, value in (arg.split("=", 1) for arg in argv if "=" in arg):
            if key == "GREETING":
                await self.every_worker_serves(self.served(value))

    async def start(self, argv: list[str]) -> None:
        assert self.server is None, "one server per page"
        self.port = free_port()
        argv = with_option(with_option(argv, "-w", str(WORKERS)), "-b", f"127.0.0.1:{self.port}")
        self.server = ProcessGroup(argv, env=self.env, log=self.cwd / "server.log", cwd=self.cwd)
        self.server.start()
        await wait_listening(self.port, 60.0, self.server.exited)
        # as a person would: the page answers on every worker before the next command
        await every_worker(self.server.pid, self.port, WORKERS, within=60.0)
        # the next command once the server serves, as a person typing them does (the CLI
        # refuses a write while no worker watches its channel)
        await every_worker(self.server.pid, self.port, WORKERS, within=60.0)

    async def every_worker_serves(self, body: bytes) -> None:
        """Until each worker answers ``GET /`` with ``body``; fail after BOUND seconds."""
        assert self.server is not None, "no server started"
        deadline = time.monotonic() + BOUND
        while True:
            answers = await every_worker(self.server.pid, self.port, WORKERS)
            if all(answer == body for answer in answers.values()):
                return
            assert time.monotonic() < deadline, f"{answers} after {BOUND} s\n{self.log()}"
            await asyncio.sleep(0.05)

    def log(self) -> str:
        return "" if self.server is None else self.server.output(60)


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value replaced, or the option added."""
    if option in argv:
        index = argv.index(option)
        return [*argv[: index + 1], value, *argv[index + 2 :]]
    return (
        [*argv[:-1], option, value, argv[-1]] if argv[0] == "hypercorn" else [*argv, option, value]
    )


@pytest.fixture(name="shell")
async def _shell(installed: Installed, tmp_path: Path) -> AsyncIterator[Shell]:
    directory = tmp_path / "empty"
    directory.mkdir()
    shell = Shell(directory, installed.env(), served=lambda value: value.encode())
    try:
        yield shell
    finally:
        if shell.server is not None:
            status = await asyncio.to_thread(shell.server.stop)
            assert "Traceback" not in shell.log(), shell.log()
            assert status == 0, shell.log()


async def follow(shell: Shell, page: Path, section: str | None = None) -> None:
    """Write the page's program files, then run its bash blocks in order."""
    for name, source in program_files(page).items():
        (shell.cwd / name).write_text(source)
    for block in blocks(page, section):
        if block.language == "bash":
            for line in block.text.splitlines():
                await shell.run(line)


async def test_readme_quickstart(shell: Shell) -> None:
    (code,) = [b for b in blocks(ROOT / "README.md", "Quickstart") if b.language == "python"]
    (shell.cwd / "app.py").write_text(code.text)  # its commands serve app:app
    shell.served = lambda value: f"{value} (20 per page)".encode()
    await follow(shell, ROOT / "README.md", "Quickstart")
    assert shell.server is not None, "the quickstart starts no server"
    await shell.every_worker_serves(b"Hi there (20 per page)")  # also after the reload


async def test_tutorial(shell: Shell) -> None:
    await follow(shell, ROOT / "docs" / "tutorial.md")
    assert shell.server is not None, "the tutorial starts no server"
    await shell.every_worker_serves(b"Hi there")


@pytest.fixture(name="clone")
def _clone(tmp_path: Path) -> Path:
    """A fresh clone of the committed tree."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    return clone


async def test_make_demo_from_a_clean_clone(clone: Path, tmp_path: Path) -> None:
    """What `make demo` runs (examples/demo.py; the Makefile adds only the virtualenv), in a
    fresh clone, and the change its printed curl command makes on every worker."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAFFLE_")}
    env |= {"DEMO_PORT": str(port), "PYTHONPATH": str(clone)}
    argv = [sys.executable, "examples/demo.py"]
    demo = ProcessGroup(argv, env=env, log=tmp_path / "demo.log", cwd=clone)
    demo.start()
    try:
        await wait_listening(port, 60.0, demo.exited)
        printed = demo.output(100).replace("\\\n", " ")
        (curl,) = re.findall(r"^\s*(curl -X PUT .*)$", printed, re.MULTILINE)
        done = await asyncio.to_thread(run, shlex.split(curl), clone, env)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + BOUND
        while True:
            answers = await every_worker(demo.pid, port, 4)
            if set(answers.values()) == {b"Hi from the admin API"}:
                break
            assert time.monotonic() < deadline, f"{answers}\n{demo.output()}"
            await asyncio.sleep(0.05)
    finally:
        status = await asyncio.to_thread(demo.stop)
    assert "Traceback" not in demo.output(1000), demo.output()
    assert status == 0, demo.output()
