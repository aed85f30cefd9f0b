"""Four worker processes starting at the same moment against one fresh database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy import func, select

from quart_waffle.store import create_engine, head_table, settings_table

ROOT = Path(__file__).resolve().parent.parent


async def test_four_processes_start_together(database_url: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.start_worker",
            database_url,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        assert await process.stdout.readline() == b"ready\n"
    # all four are imported and waiting: release them together
    results = await asyncio.gather(*(process.communicate(b"go\n") for process in processes))
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert stdout.decode().strip() == "revision 0 greeting Hello"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            keys = (await connection.execute(select(settings_table.c.key))).scalars().all()
            heads = await connection.scalar(select(func.count()).select_from(head_table))
    finally:
        await engine.dispose()
    assert keys == []  # nothing seeded: every key serves its declared default
    assert heads == 1
