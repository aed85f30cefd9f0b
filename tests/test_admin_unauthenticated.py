"""What a visitor who has not authenticated can learn from the admin: nothing
about the worker (pid, revision), the settings (names, values) or its health,
in any body or header."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import quart_waffle.admin
from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, CONFS, make_waffle, serving

REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/waffle/", {}),
    ("GET", "/waffle", {}),
    ("GET", "/waffle/nothing/here", {}),
    ("PUT", "/waffle/", {}),
    ("GET", "/waffle/history/THEME", {}),
    ("GET", "/waffle/history/NOPE", {}),
    ("POST", "/waffle/login", {"form": {"csrf": "x", "token": "wrong-but-long-enough"}}),
    ("POST", "/waffle/save", {"form": {"csrf": "x", "revision": "1"}}),
    ("POST", "/waffle/logout", {"form": {"csrf": "x"}}),
    ("GET", "/waffle/api/settings", {}),
    ("GET", "/waffle/api/settings/THEME", {}),
    ("GET", "/waffle/api/settings/NOPE", {}),
    ("PUT", "/waffle/api/settings/THEME", {"json": {"value": "dark"}}),
    ("GET", "/waffle/api/history", {}),
    ("GET", "/waffle/api/health", {}),
    ("GET", "/waffle/api/nothing", {}),
    ("GET", "/waffle/openapi.json", {}),
    ("POST", "/waffle/openapi.json", {}),
    ("GET", "/waffle/metrics", {}),
]
WRONG = {"Authorization": "Bearer wrong-but-long-enough"}


async def test_a_visitor_learns_nothing(sqlite_url: str) -> None:
    with_token = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert with_token.app is not None
    with_token.app.secret_key = "test-secret-key"
    not_configured = make_waffle(sqlite_url)
    assert not_configured.app is not None
    not_configured.app.secret_key = "test-secret-key"
    pid = str(os.getpid())
    async with serving(with_token, not_configured):
        await with_token.update({"THEME": "dark"}, actor="test")
        for waffle in (with_token, not_configured):
            for method, path, options in REQUESTS:
                for headers in ({}, WRONG):
                    await _learns_nothing(waffle, method, path, options, headers, pid)


async def _learns_nothing(
    waffle: QuartWaffle,
    method: str,
    path: str,
    options: dict[str, Any],
    headers: dict[str, str],
    pid: str,
) -> None:
    assert waffle.app is not None
    response = await waffle.app.test_client().open(path, method=method, headers=headers, **options)
    where = (method, path, headers, response.status_code)
    assert response.status_code != 200 or "Log in" in await response.get_data(as_text=True)
    body = await response.get_data(as_text=True)
    shown = body + "\n" + "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    assert pid not in shown, where
    assert not re.search(r"\bpid\b|revision", shown, re.IGNORECASE), where
    assert "ETag" not in response.headers, where
    for key in CONFS:
        if key != "THEME" or "THEME" not in path:  # the visitor's own URL may be echoed
            assert key not in shown, (where, key)
    assert "dark" not in shown, where
    for word in ("channel", "applied", "last_sync", "connected"):
        assert word not in shown, (where, word)


async def test_static_files_tell_nothing_of_the_install(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    folder = Path(quart_waffle.admin.__file__).parent / "static" / "waffle"
    async with serving(waffle):
        client = waffle.app.test_client()
        for name, mimetype in (("admin.css", "text/css"), ("admin.js", "javascript")):
            data = (folder / name).read_bytes()
            response = await client.get(f"/waffle/static/waffle/{name}")
            assert response.status_code == 200
            assert mimetype in response.headers["Content-Type"]
            assert await response.get_data() == data
            # the ETag is the content's digest: not the path, mtime or size Werkzeug's holds
            assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()[:32]}"'
            assert "Last-Modified" not in response.headers
            again = await client.get(
                f"/waffle/static/waffle/{name}",
                headers={"If-None-Match": response.headers["ETag"]},
            )
            assert again.status_code == 304
            assert await again.get_data() == b""
        assert (await client.get("/waffle/static/waffle/nothing.js")).status_code == 404
        assert (await client.get("/waffle/static/waffle/../__init__.py")).status_code == 404
