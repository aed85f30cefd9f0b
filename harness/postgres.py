"""A fresh, empty PostgreSQL database per test or benchmark run."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from harness.services import POSTGRES_URL


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "waffle_test") -> AsyncIterator[str]:
    """Create a database named ``<prefix>_<random>`` on the test server, yield its URL,
    drop it afterwards (even with connections still open)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
