"""The store behind PgBouncer in transaction pooling mode: a real pgbouncer
process, started by the test, with fewer server connections than workers,
so consecutive transactions of one worker land on different server
connections (and prepared statements of one may meet another's)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import IN_CI, free_port, wait_listening
from tests.helpers import make_waffle

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def bouncer_command(postgres_url: str, directory: Path, port: int) -> list[str]:
    """Write a pgbouncer.ini in ``directory`` for ``postgres_url`` (transaction
    pooling, two server connections) and return the command that runs it."""
    if not os.path.exists(PGBOUNCER):
        if IN_CI:
            pytest.fail("CI=true: pgbouncer is not installed", pytrace=False)
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    target = urlsplit(postgres_url)
    directory.chmod(0o777)  # pgbouncer refuses to run as root: it runs as nobody then
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={target.hostname} port={target.port or 5432} user={target.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = any\npool_mode = transaction\n"
        "default_pool_size = 2\nmax_client_conn = 100\n"
        "unix_socket_dir =\n"
    )
    config.chmod(0o644)
    return [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]


@pytest.fixture(name="bouncer_url")
async def _bouncer_url(postgres_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """``postgres_url`` through a private pgbouncer process."""
    port = free_port()
    command = bouncer_command(postgres_url, tmp_path, port)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_listening(
            port, 10.0, lambda: None if process.returncode is None else "pgbouncer exited"
        )
        target = urlsplit(postgres_url)
        yield urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{port}"))
    finally:
        process.terminate()
        await process.wait()


WORKER = """
import asyncio, sys
from tests.helpers import make_waffle

async def main(url: str, name: str) -> None:
    waffle = make_waffle(url)
    async with waffle.connected():
        for number in range(15):
            await waffle.update({"GREETING": f"{name}-{number}"}, actor=name)
            await waffle.refresh()
            await waffle.history(key="GREETING", limit=5)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_worker_processes_share_a_transaction_pooler(bouncer_url: str) -> None:
    """Three processes (each with its own statement names) write and catch up
    through two pooled server connections: nothing fails, nothing is lost."""
    async with make_waffle(bouncer_url).connected():
        pass  # the tables, before the race
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            bouncer_url,
            f"w{index}",
            stderr=asyncio.subprocess.PIPE,
        )
        for index in range(3)
    ]
    results = [await process.communicate() for process in processes]
    failures = [error.decode()[-2000:] for _, error in results if error]
    assert failures == []
    assert [process.returncode for process in processes] == [0, 0, 0]
    waffle = make_waffle(bouncer_url)
    async with waffle.connected():
        assert waffle.revision == 45
        assert len(await waffle.history(key="GREETING", limit=100)) == 45
