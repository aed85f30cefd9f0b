"""A secret's value never appears in clear on any surface: every API body
(list, get, PUT, PATCH, reset, 409, 422, 503), the OpenAPI document, history
(a key no longer declared included), the page, the CLI (list, get, history,
export), logs and health."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import insert, text
from sqlalchemy.exc import OperationalError

from quart_waffle import QuartWaffle
from quart_waffle.store import SettingsStore, create_engine, history_table
from tests.helpers import ADMIN_TOKEN, serving
from tests.test_admin_page import csrf_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEFAULT_SECRET = "default-secret-7Qx"
NEW_SECRET = "typed-secret-9Zk"
HIDDEN_CHOICES = ["plan-hidden-alpha", "plan-hidden-beta"]
RETIRED_SECRET = "retired-secret-4Jw"
LEGACY_SECRET = "legacy-secret-2Hd"
MISFIT_SECRET = "misfit-secret-8Vq"
SECRETS = [
    DEFAULT_SECRET,
    NEW_SECRET,
    *HIDDEN_CHOICES,
    RETIRED_SECRET,
    LEGACY_SECRET,
    MISFIT_SECRET,
]

CONFS: dict[str, dict[str, Any]] = {
    "GREETING": {"default": "Hello"},
    "MAX_ITEMS": {"default": 20, "min": 1, "max": 500},
    "API_KEY": {"default": DEFAULT_SECRET, "secret": True},
    "PLAN": {"default": HIDDEN_CHOICES[0], "choices": HIDDEN_CHOICES, "secret": True},
}
DRIVER_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy")
"""A driver's own debug log shows SQL parameters: outside quart-waffle's control
(docs/admin.md says to keep it off in production)."""
RETIRED = {"RETIRED_KEY": {"default": "unset", "secret": True}}
"""A secret the previous version of the app declared, and this one no longer does."""


def app_with(database_url: str, confs: dict[str, dict[str, Any]]) -> QuartWaffle:
    app = Quart(__name__)
    app.secret_key = "proof-secret-key"
    app.config["WAFFLE_CONFS"] = confs
    return QuartWaffle(app, database_url=database_url, watchtype="none", admin_token=ADMIN_TOKEN)


async def legacy_history(database_url: str) -> None:
    """A history row as an older version wrote it: a secret's value in clear,
    of a key this version no longer declares (so nothing can know it was one)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(history_table).values(
                    revision=1,
                    key="LEGACY_TOKEN",
                    old_value=None,
                    new_value=json.dumps(LEGACY_SECRET),
                    changed_at=datetime.now(UTC),
                    actor="",
                )
            )
    finally:
        await engine.dispose()


def assert_no_secret(surface: str, content: str | bytes, secrets: Sequence[str] = ()) -> None:
    shown = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    for secret in secrets or SECRETS:
        assert secret not in shown, f"{secret!r} in clear in {surface}: {shown[:2000]}"


@pytest.fixture(name="waffle")
async def _waffle(sqlite_url: str) -> AsyncIterator[QuartWaffle]:
    """The app serving, after its previous version stored a value of a secret
    it no longer declares; API_KEY and PLAN hold new values."""
    previous = app_with(sqlite_url, {**CONFS, **RETIRED})
    async with serving(previous):
        await previous.update({"RETIRED_KEY": RETIRED_SECRET})
        await previous.update({"RETIRED_KEY": "rotated-away"})
    await legacy_history(sqlite_url)
    waffle = app_with(sqlite_url, CONFS)
    async with serving(waffle):
        await waffle.update({"API_KEY": NEW_SECRET, "PLAN": HIDDEN_CHOICES[1]})
        yield waffle


async def surfaces(client: Client, waffle: QuartWaffle) -> dict[str, str]:
    """Every API answer about the secrets, the writes' answers included."""
    seen: dict[str, str] = {}

    async def record(name: str, method: str, path: str, **options: Any) -> int:
        response = await client.open(path, method=method, **options)
        seen[name] = await response.get_data(as_text=True)
        seen[f"{name} headers"] = str(response.headers)
        status: int = response.status_code
        return status

    revision = waffle.revision
    assert await record("list", "GET", "/waffle/api/settings", headers=AUTH) == 200
    assert await record("get", "GET", "/waffle/api/settings/API_KEY", headers=AUTH) == 200
    assert await record("get choice", "GET", "/waffle/api/settings/PLAN", headers=AUTH) == 200
    assert await record("openapi", "GET", "/waffle/openapi.json", headers=AUTH) == 200
    assert await record("history", "GET", "/waffle/api/history", headers=AUTH) == 200
    key_history = "/waffle/api/history?key=API_KEY"
    assert await record("key history", "GET", key_history, headers=AUTH) == 200
    assert await record("health", "GET", "/waffle/api/health", headers=AUTH) == 200
    put = {"json": {"value": NEW_SECRET + "-2"}, "headers": AUTH}
    assert await record("put", "PUT", "/waffle/api/settings/API_KEY", **put) == 200
    patch = {"json": {"values": {"API_KEY": NEW_SECRET, "GREETING": "Hi"}}, "headers": AUTH}
    assert await record("patch", "PATCH", "/waffle/api/settings", **patch) == 200
    stale = {"If-Match": f'"{revision}"', **AUTH}
    conflict = {"json": {"values": {"API_KEY": "x", "PLAN": HIDDEN_CHOICES[0]}}, "headers": stale}
    assert await record("409", "PATCH", "/waffle/api/settings", **conflict) == 409
    wrong_choice = {"json": {"value": "plan-unknown"}, "headers": AUTH}
    assert await record("422", "PUT", "/waffle/api/settings/PLAN", **wrong_choice) == 422
    assert await record("reset", "POST", "/waffle/api/settings/API_KEY/reset", headers=AUTH) == 200
    await waffle.update({"API_KEY": NEW_SECRET})
    return seen


async def test_api_bodies_never_show_a_secret(waffle: QuartWaffle) -> None:
    assert waffle.app is not None
    seen = await surfaces(waffle.app.test_client(), waffle)
    for surface, content in seen.items():
        assert_no_secret(surface, content)
    history = json.loads(seen["history"])["entries"]
    for key in ("RETIRED_KEY", "LEGACY_TOKEN"):
        entries = [entry for entry in history if entry["key"] == key]
        assert entries, f"the history of {key} must be listed (masked), not dropped"
        assert {entry["new_value"] for entry in entries} == {"********"}
    assert json.loads(seen["409"])["error"]["current"]["API_KEY"] == "********"


async def test_a_failing_write_never_shows_or_logs_the_secret(
    waffle: QuartWaffle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver error carries the statement's parameters: the 503 and the
    log line must not."""

    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError(
            "UPDATE waffle_settings SET value=?", {"value": json.dumps(NEW_SECRET)}, OSError()
        )

    monkeypatch.setattr(SettingsStore, "write", fail)
    assert waffle.app is not None
    with caplog.at_level(logging.DEBUG):
        response = await waffle.app.test_client().put(
            "/waffle/api/settings/API_KEY", json={"value": NEW_SECRET}, headers=AUTH
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert_no_secret("503 body", await response.get_data())
    assert_no_secret("logs", caplog.text)
    assert "unavailable" in caplog.text


async def test_the_page_never_shows_a_secret(waffle: QuartWaffle) -> None:
    assert waffle.app is not None
    client = waffle.app.test_client()
    login = await client.get("/waffle/")
    response = await client.post(
        "/waffle/login",
        form={"csrf": csrf_of(await login.get_data(as_text=True)), "token": ADMIN_TOKEN},
    )
    assert response.status_code == 303
    index = await client.get("/waffle/")
    html = await index.get_data(as_text=True)
    assert 'id="settings-form"' in html
    assert_no_secret("page", html)
    for key in ("API_KEY", "PLAN"):
        history = await client.get(f"/waffle/history/{key}")
        assert history.status_code == 200
        assert_no_secret(f"history page of {key}", await history.get_data())
    # re-rendered after a rejection: the typed secret is not echoed back
    form = {
        "csrf": csrf_of(html),
        "revision": str(waffle.revision),
        "value-API_KEY": NEW_SECRET + "-typed",
        "value-MAX_ITEMS": "9999",
    }
    SECRETS.append(NEW_SECRET + "-typed")
    try:
        rejected = await client.post("/waffle/save", form=form)
        assert rejected.status_code == 422
        assert_no_secret("422 page", await rejected.get_data())
        form["revision"] = "0"
        form["value-MAX_ITEMS"] = "30"
        await waffle.update({"API_KEY": NEW_SECRET + "-other", "MAX_ITEMS": 25})
        conflicted = await client.post("/waffle/save", form=form)
        assert conflicted.status_code == 409
        assert_no_secret("409 page", await conflicted.get_data())
    finally:
        SECRETS.remove(NEW_SECRET + "-typed")


async def test_logs_never_show_a_secret(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Through every API surface, and a stored secret that no longer fits its
    declaration (a str secret that became an int), which is logged."""
    with caplog.at_level(logging.DEBUG):
        previous = app_with(
            sqlite_url, {**CONFS, **RETIRED, "PIN": {"default": "", "secret": True}}
        )
        async with serving(previous):
            await previous.update({"RETIRED_KEY": RETIRED_SECRET, "PIN": MISFIT_SECRET})
        waffle = app_with(sqlite_url, {**CONFS, "PIN": {"default": 0, "secret": True}})
        async with serving(waffle):
            assert waffle.app is not None
            await surfaces(waffle.app.test_client(), waffle)
    ours = [record for record in caplog.records if not record.name.startswith(DRIVER_LOGGERS)]
    assert any("PIN" in record.getMessage() for record in ours), "the misfit was not logged"
    assert_no_secret("logs", "\n".join(record.getMessage() for record in ours))


async def test_the_stored_history_holds_no_secret_in_clear(waffle: QuartWaffle) -> None:
    """Except the legacy row: nothing can tell that an undeclared key was secret."""
    store = waffle._connected().store
    async with store.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM waffle_history"))).all()
    declared = [secret for secret in SECRETS if secret != LEGACY_SECRET]
    assert_no_secret("the waffle_history table", repr(rows), declared)


def cli(waffle: QuartWaffle, *args: str) -> Result:
    assert waffle.app is not None
    result: Result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(name="cli_waffle")
def _cli_waffle(sqlite_url: str) -> QuartWaffle:
    """For the CLI, which runs its own event loop: the previous version stored
    a retired secret; this one set new secrets."""
    cli(app_with(sqlite_url, {**CONFS, **RETIRED}), "set", f"RETIRED_KEY={RETIRED_SECRET}")
    asyncio.run(legacy_history(sqlite_url))
    waffle = app_with(sqlite_url, CONFS)
    cli(waffle, "set", f"API_KEY={NEW_SECRET}", f"PLAN={HIDDEN_CHOICES[1]}")
    return waffle


def test_cli_never_shows_a_secret_unasked(cli_waffle: QuartWaffle, tmp_path: Path) -> None:
    for args in (
        ["list"],
        ["get", "API_KEY"],
        ["get", "PLAN"],
        ["history"],
        ["history", "--key", "API_KEY"],
        ["export"],
    ):
        output = cli(cli_waffle, *args).output
        assert_no_secret(f"quart waffle {' '.join(args)}", output)
    history = cli(cli_waffle, "history").output
    assert "RETIRED_KEY" in history
    assert "LEGACY_TOKEN" in history
    export = tmp_path / "settings.json"
    cli(cli_waffle, "export", str(export))
    assert_no_secret("an export without --include-secrets", export.read_text())


def test_an_export_with_secrets_is_private(cli_waffle: QuartWaffle, tmp_path: Path) -> None:
    export = tmp_path / "with-secrets.json"
    cli(cli_waffle, "export", "--include-secrets", str(export))
    assert NEW_SECRET in export.read_text()
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
