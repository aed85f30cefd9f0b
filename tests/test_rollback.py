"""Reasons, history filters, revert and restore from every surface (Python,
CLI, admin API, admin page) on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from quart.typing import TestClientProtocol as Client
from sqlalchemy import MetaData, Table, text

from quart_waffle import QuartWaffle
from quart_waffle.errors import ConflictError, InvalidValueError
from quart_waffle.rollback import json_diff
from quart_waffle.store import SettingsStore, create_engine, history_table
from tests.helpers import ADMIN_TOKEN, make_waffle
from tests.test_admin_page import csrf_of, logged_in, text_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "n3w-s3cret-value"


@pytest.fixture(name="served")
async def _served(database_url: str) -> AsyncIterator[QuartWaffle]:
    waffle = make_waffle(database_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    async with waffle.app.test_app():
        yield waffle


def cli(waffle: QuartWaffle, *args: str) -> Result:
    assert waffle.app is not None
    result: Result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    return result


async def stored(waffle: QuartWaffle) -> tuple[int, int]:
    """The newest revision and the number of history rows."""
    entries = await waffle.history(limit=1000)
    return (entries[0].revision if entries else 0), len(entries)


async def test_python_reasons_revert_restore(served: QuartWaffle) -> None:
    waffle = served
    first = await waffle.update(
        {"MAX_ITEMS": 5, "BANNER": {"text": "hi", "level": "info"}, "API_KEY": SECRET},
        actor="alice",
        reason="launch",
    )
    second = await waffle.update({"MAX_ITEMS": 6, "API_KEY": "other-value"}, actor="bob")
    for bad in ("line\nbreak", "x" * 501, 7):
        with pytest.raises(InvalidValueError) as refused:
            await waffle.update({"MAX_ITEMS": 9}, reason=bad)  # type: ignore[arg-type]
        assert list(refused.value.errors) == ["reason"]
    assert await stored(waffle) == (second, 5)

    # a later change to MAX_ITEMS makes reverting `first` a conflict naming it
    with pytest.raises(ConflictError) as conflict:
        await waffle.revert(first, actor="carol")
    assert set(conflict.value.revisions) == {"MAX_ITEMS", "API_KEY"}
    assert await stored(waffle) == (second, 5)

    reverted = await waffle.revert(second, actor="carol", reason="bad rotation")
    assert (waffle.get("MAX_ITEMS"), waffle.get("API_KEY")) == (5, SECRET)
    entries = await waffle.history(revision=reverted)
    assert {entry.reason for entry in entries} == {"revert of revision 2: bad rotation"}
    assert all(SECRET not in repr(entry) for entry in await waffle.history(limit=100))

    restored = await waffle.restore(0, actor="dave")
    assert waffle.is_default("MAX_ITEMS")
    assert waffle.get("API_KEY") == "s3cret"
    assert waffle.get("BANNER") == {"text": "", "level": "info"}
    await waffle.restore(first, expected_revision=restored)
    assert (waffle.get("MAX_ITEMS"), waffle.get("API_KEY")) == (5, SECRET)
    with pytest.raises(ConflictError):
        await waffle.restore(0, expected_revision=first)

    assert [entry.revision for entry in await waffle.history(actor="alice")] == [first] * 3
    now = datetime.now(UTC)
    assert await waffle.history(since=now + timedelta(minutes=1)) == []
    assert len(await waffle.history(until=now + timedelta(minutes=1), limit=100)) == 13
    banner = (await waffle.history(key="BANNER", revision=first))[0]
    assert banner.reason == "launch"
    assert json_diff(banner.old_value, banner.new_value) == [
        {"op": "replace", "path": "/text", "old": "", "new": "hi"}
    ]


def test_cli(database_url: str) -> None:
    waffle = make_waffle(database_url)
    assert cli(waffle, "set", "MAX_ITEMS=5", "--reason", "more room").exit_code == 0
    assert cli(waffle, "set", "MAX_ITEMS=6").exit_code == 0
    bad = cli(waffle, "set", "MAX_ITEMS=7", "--reason", "two\nlines")
    assert (bad.exit_code, bad.output.count("\n")) == (1, 1)
    assert "reason" in bad.output
    refused = cli(waffle, "revert", "1")
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1
    assert "MAX_ITEMS" in refused.output
    assert cli(waffle, "history").output.count("\n") == 2
    forced = cli(waffle, "revert", "1", "--force", "--reason", "undo")
    assert forced.output == "revision 3\n"
    assert cli(waffle, "get", "MAX_ITEMS").output == "20\n"
    history = cli(waffle, "history", "--revision", "3").output
    assert "reason: revert of revision 1: undo" in history
    assert "reason: more room" in cli(waffle, "history", "--until", "2999-01-01").output
    assert cli(waffle, "history", "--since", "2999-01-01").output == ""
    again = cli(waffle, "revert", "1", "--force")  # MAX_ITEMS is already back
    assert again.output == "nothing to change\nrevision 3\n"
    stale = cli(waffle, "restore", "2", "--expected-revision", "0")
    assert (stale.exit_code, stale.output.count("\n")) == (1, 1)
    assert cli(waffle, "restore", "2", "--expected-revision", "3").output == "revision 4\n"
    assert cli(waffle, "restore", "2", "--expect-revision", "4").output == (
        "nothing to change\nrevision 4\n"
    )
    assert cli(waffle, "history", "--since", "yesterday").exit_code == 1


async def test_admin_api(served: QuartWaffle) -> None:
    waffle = served
    assert waffle.app is not None
    client = waffle.app.test_client()
    response = await client.patch(
        "/waffle/api/settings",
        json={"values": {"BANNER": {"text": "a", "level": "info"}}, "reason": "promo"},
        headers=AUTH,
    )
    assert response.status_code == 200
    await client.put(
        "/waffle/api/settings/BANNER", json={"value": {"text": "b", "level": "x"}}, headers=AUTH
    )
    bad = await client.put(
        "/waffle/api/settings/MAX_ITEMS", json={"value": 3, "reason": "\x1b[2J"}, headers=AUTH
    )
    assert bad.status_code == 422
    assert "reason" in (await bad.get_json())["error"]["fields"]

    history = await (await client.get("/waffle/api/history?key=BANNER", headers=AUTH)).get_json()
    assert [entry["reason"] for entry in history["entries"]] == ["", "promo"]
    assert history["entries"][0]["diff"] == [
        {"op": "replace", "path": "/text", "old": "a", "new": "b"},
        {"op": "replace", "path": "/level", "old": "info", "new": "x"},
    ]
    filtered = await client.get("/waffle/api/history?actor=nobody&since=2020-01-01", headers=AUTH)
    assert (await filtered.get_json())["entries"] == []

    conflict = await client.post("/waffle/api/revisions/1/revert", headers=AUTH)
    assert conflict.status_code == 409
    assert list((await conflict.get_json())["error"]["fields"]) == ["BANNER"]
    assert await stored(waffle) == (2, 2)
    forced = await client.post(
        "/waffle/api/revisions/1/revert", json={"force": True, "reason": "no promo"}, headers=AUTH
    )
    assert (await forced.get_json())["revision"] == 3
    assert waffle.is_default("BANNER")
    stale = await client.post(
        "/waffle/api/revisions/2/restore", headers={**AUTH, "If-Match": '"1"'}
    )
    assert stale.status_code == 409
    restored = await client.post(
        "/waffle/api/revisions/2/restore", headers={**AUTH, "If-Match": '"3"'}
    )
    assert restored.status_code == 200
    assert waffle.get("BANNER")["text"] == "b"
    document = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
    assert {"/waffle/api/revisions/{revision}/revert", "/waffle/api/apply"} <= set(
        document["paths"]
    )
    huge = await client.post(f"/waffle/api/revisions/{2**64}/restore", headers=AUTH)
    assert huge.status_code == 422
    unknown = await client.post("/waffle/api/revisions/99/revert", headers=AUTH)
    assert unknown.status_code == 422
    assert "revision" in (await unknown.get_json())["error"]["fields"]

    seen = []  # every body a rollback of a secret answers: none holds its value
    for value in (SECRET, "rotated-value"):
        put = await client.put("/waffle/api/settings/API_KEY", json={"value": value}, headers=AUTH)
        seen.append(await put.get_data(as_text=True))
    rotated = (await put.get_json())["revision"]
    for path in (f"revisions/{rotated - 1}/revert", f"revisions/{rotated}/revert"):
        response = await client.post(f"/waffle/api/{path}", headers=AUTH)
        seen.append(await response.get_data(as_text=True))
    history_page = await client.get("/waffle/api/history?key=API_KEY", headers=AUTH)
    seen.append(await history_page.get_data(as_text=True))
    assert waffle.get("API_KEY") == SECRET
    assert not [body for body in seen if SECRET in body or "rotated-value" in body]


async def test_admin_page(served: QuartWaffle) -> None:
    waffle = served
    assert waffle.app is not None
    client: Client = waffle.app.test_client()
    csrf = await logged_in(client)
    await waffle.update({"THEME": "dark"}, actor="ops", reason="night mode")
    await waffle.update({"THEME": "light", "MAX_ITEMS": 9}, actor="ops")
    page = await text_of(await client.get("/waffle/history?actor=ops"))
    assert "night mode" in page
    assert 'id="revert-2"' in page
    refused = await client.post("/waffle/revert", form={"csrf": csrf, "revision": "1"})
    assert refused.status_code == 409
    assert "THEME" in await text_of(refused)
    reverted = await client.post(
        "/waffle/revert", form={"csrf": csrf, "revision": "2", "reason": "too bright"}
    )
    assert reverted.status_code == 303
    assert (waffle.get("THEME"), waffle.is_default("MAX_ITEMS")) == ("dark", True)
    restored = await client.post(
        "/waffle/restore", form={"csrf": csrf, "revision": "0", "expected": "3"}
    )
    assert restored.status_code == 303
    assert waffle.is_default("THEME")
    assert "revert of revision 2: too bright" in await text_of(await client.get("/waffle/history"))
    forged = await client.post("/waffle/revert", form={"csrf": "forged", "revision": "1"})
    assert forged.status_code == 403
    saved = await client.post(
        "/waffle/save",
        form={"csrf": csrf, "revision": "4", "value-GREETING": "Hey", "reason": "friendlier"},
    )
    assert saved.status_code == 303
    assert (await waffle.history(key="GREETING"))[0].reason == "friendlier"
    assert csrf_of(await text_of(await client.get("/waffle/history/GREETING")))
    reset = await client.post(
        "/waffle/reset", form={"csrf": csrf, "revision": "5", "key": "GREETING", "reason": "back"}
    )
    assert reset.status_code == 303
    assert (await waffle.history(key="GREETING"))[0].reason == "back"


async def test_reason_column_added_to_an_older_store(database_url: str) -> None:
    """A store created before reasons gets the column when workers start, its rows kept."""
    engine = create_engine(database_url)
    try:
        older = MetaData()
        Table("waffle_history", older, *(c._copy() for c in history_table.c if c.name != "reason"))
        async with engine.begin() as connection:
            await connection.run_sync(older.create_all)
            await connection.execute(
                text(
                    "INSERT INTO waffle_history (revision, key, old_value, new_value,"
                    " changed_at, actor) VALUES (1, 'MAX_ITEMS', '20', '30',"
                    " '2026-01-01 00:00:00+00', 'old')"
                )
            )
    finally:
        await engine.dispose()
    # four workers upgrading at once, each on its own connection
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(SettingsStore(each).create_tables() for each in engines))
    finally:
        for each in engines:
            await each.dispose()
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"MAX_ITEMS": 40}, reason="after upgrade")
        entries = await waffle.history()
    assert [(entry.actor, entry.reason) for entry in entries] == [
        ("", "after upgrade"),
        ("old", ""),
    ]


def test_json_diff() -> None:
    assert json_diff(1, 2) is None
    assert json_diff({"a/b": [1, 2]}, {"a/b": [1, 3], "c": None}) == [
        {"op": "replace", "path": "/a~1b/1", "old": 2, "new": 3},
        {"op": "add", "path": "/c", "new": None},
    ]
    assert json_diff([1], [1, 2]) == [{"op": "replace", "path": "", "old": [1], "new": [1, 2]}]
    cut: Any = json_diff({str(n): n for n in range(80)}, {str(n): -n - 1 for n in range(80)})
    assert len(cut) == 51
    assert cut[-1]["op"] == "more"
