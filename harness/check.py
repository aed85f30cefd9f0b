"""``python -m harness.check`` (``make test`` runs it first): every external thing the test
suite needs, and whether it is here.

Under CI=true anything missing is an error (exit status 1); elsewhere the tests that need it
are skipped or fail, each saying why. A module of its own, not imported by the package, so
that running it never imports it twice.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.browser import CHROMIUM
from harness.services import IN_CI, SERVICES, reachable


@dataclass(frozen=True)
class Need:
    """One thing the suite needs: its name, where it is looked for, what uses it."""

    name: str
    where: str
    used_by: str
    present: Callable[[], bool]


def _program(name: str, used_by: str, *fallbacks: str) -> Need:
    """A program on PATH (or at one of ``fallbacks``, where the tests look too)."""
    found = shutil.which(name) or next((p for p in fallbacks if os.access(p, os.X_OK)), None)
    return Need(name, found or "PATH", used_by, lambda: found is not None)


def _service(name: str, url: str) -> Need:
    """A server the tests connect to."""
    return Need(name, url, "the tests on that service", lambda: reachable(url))


def needs() -> list[Need]:
    """Everything the suite needs from outside its virtual environment."""
    return [
        *(_service(name, url) for name, url in SERVICES.items()),
        _program("redis-server", "private Redis servers, Sentinels and Clusters"),
        _program("redis-cli", "creating a Redis Cluster"),
        _program("pgbouncer", "the store behind a transaction pooler", "/usr/sbin/pgbouncer"),
        _program("git", "the docs tests: make demo in a fresh clone"),
        _program("curl", "the docs tests: the demo's curl command"),
        _program("openssl", "a certificate for the TLS serving tests"),
        _program("bash", "the CLI tests with a closed pipe"),
        Need(
            "Chromium",
            CHROMIUM,
            "the admin page in a browser; WAFFLE_TEST_CHROMIUM moves it",
            lambda: os.access(CHROMIUM, os.X_OK),
        ),
        Need(
            "playwright",
            sys.prefix,
            "the admin page in a browser",
            lambda: importlib.util.find_spec("playwright") is not None,
        ),
    ]


def main() -> int:
    missing = []
    for need in needs():
        present = need.present()
        if not present:
            missing.append(need.name)
        state = "ok" if present else "MISSING"
        print(f"test needs: {need.name} at {need.where}, for {need.used_by}: {state}")
    if missing and IN_CI:
        print(f"CI=true and missing: {', '.join(missing)}: failing.", file=sys.stderr)
        return 1
    if missing:
        print(f"Missing: {', '.join(missing)}: the tests that need them are SKIPPED or fail.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
