"""The services tests and benchmarks talk to, and why what needs one cannot run.

Under CI=true a missing service is an error; elsewhere what needs it is skipped, with the
reason. ``python -m harness.check`` says what is missing (these and the programs).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

POSTGRES_URL = os.environ.get(
    "WAFFLE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("WAFFLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICES = {"PostgreSQL": POSTGRES_URL, "Redis": REDIS_URL}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def reachable(url: str) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def missing_reason(name: str) -> str | None:
    """Why what needs service ``name`` ("PostgreSQL", "Redis") cannot run, or None."""
    url = SERVICES[name]
    if reachable(url):
        return None
    return (
        f"{name} is not reachable at {url}: start it, or point"
        f" WAFFLE_TEST_{name.upper()}_URL at one"
    )
