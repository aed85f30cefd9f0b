"""Scheduled changes from the admin API, the OpenAPI document and the CLI, on
real SQLite and PostgreSQL: listed, added, cancelled, and bad input refused
(422 naming the member, or one line and exit 1) with nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result

from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, make_waffle
from tests.test_admin_page import logged_in, text_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(name="served")
async def _served(database_url: str) -> AsyncIterator[QuartWaffle]:
    waffle = make_waffle(database_url, admin_token=ADMIN_TOKEN, check_interval=0.2)
    assert waffle.app is not None
    async with waffle.app.test_app():
        yield waffle


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_admin_api(served: QuartWaffle) -> None:
    waffle = served
    assert waffle.app is not None
    client = waffle.app.test_client()
    body = {"values": {"MAX_ITEMS": 42}, "at": later(0.3), "until": later(60), "reason": "test"}
    added = await client.post("/waffle/api/schedule", json=body, headers=AUTH)
    assert added.status_code == 201
    entry = await added.get_json()
    assert (entry["state"], entry["values"], entry["actor"]) == (
        "pending",
        {"MAX_ITEMS": 42},
        "token",
    )
    for _ in range(100):
        if waffle.get("MAX_ITEMS") == 42:
            break
        await asyncio.sleep(0.05)
    listed = await (await client.get("/waffle/api/schedule", headers=AUTH)).get_json()
    assert [(item["id"], item["state"]) for item in listed["schedule"]] == [
        (entry["id"], "applied")
    ]
    cancelled = await client.delete(f"/waffle/api/schedule/{entry['id']}", headers=AUTH)
    assert (await cancelled.get_json())["state"] == "cancelled"
    again = await client.delete(f"/waffle/api/schedule/{entry['id']}", headers=AUTH)
    assert again.status_code == 409
    missing = await client.delete("/waffle/api/schedule/999", headers=AUTH)
    assert missing.status_code == 404
    unauthenticated = await client.get("/waffle/api/schedule")
    assert unauthenticated.status_code == 401
    stranger = await client.post("/waffle/api/schedule", json={**body, "at": later(60)})
    assert stranger.status_code == 401
    assert (await client.delete("/waffle/api/schedule/1")).status_code == 401
    assert len(await waffle.scheduled()) == 1
    document = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
    assert {"get", "post"} <= set(document["paths"]["/waffle/api/schedule"])
    assert "delete" in document["paths"]["/waffle/api/schedule/{id}"]


async def test_admin_api_bad_input_stores_nothing(served: QuartWaffle) -> None:
    waffle = served
    assert waffle.app is not None
    client = waffle.app.test_client()
    good: dict[str, Any] = {"values": {"MAX_ITEMS": 42}, "at": later(60)}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "values": {"MAX_ITEMS": 0}}, "MAX_ITEMS"),
        ({**good, "values": {"NOPE": 1}}, "NOPE"),
        ({**good, "values": {"API_KEY": "********"}}, "API_KEY"),
        ({**good, "values": {}}, "values"),
        ({"at": later(60)}, "values"),
        ({**good, "at": later(-60)}, "at"),
        ({**good, "at": "2030-01-01T00:00:00"}, "at"),
        ({**good, "at": "20300101T000000Z"}, "at"),  # ISO 8601 basic format: not date-time
        ({**good, "at": "2030-01-01 00:00+00:00"}, "at"),
        ({**good, "at": 5}, "at"),
        ({**good, "until": later(30)}, "until"),
        ({**good, "force": "yes"}, "force"),
        ({**good, "reason": "a\nb"}, "reason"),
        ({**good, "extra": 1}, "extra"),
        # past year 1 or 9998 once in UTC (an OverflowError was a 500)
        (
            {**good, "at": "2026-11-25T00:00:00-23:59", "until": "0001-01-01T00:00:00+14:00"},
            "until",
        ),
        ({**good, "at": "9999-12-31T23:59:59-23:59"}, "at"),
    ]
    for body, field in cases:
        refused = await client.post("/waffle/api/schedule", json=body, headers=AUTH)
        assert refused.status_code == 422, body
        assert field in (await refused.get_json())["error"]["fields"], body
    assert await waffle.scheduled() == []
    for entry_id in (2**63, 10**30):  # past the databases' ids: 422, not a 500
        refused = await client.delete(f"/waffle/api/schedule/{entry_id}", headers=AUTH)
        assert refused.status_code == 422, entry_id
        assert list((await refused.get_json())["error"]["fields"]) == ["id"]
    for query in ("since=9999-12-31T23:59:59-23:59", "until=0001-01-01T00:00:00%2B14:00"):
        refused = await client.get(f"/waffle/api/history?{query}", headers=AUTH)
        assert refused.status_code == 422, query
        assert list((await refused.get_json())["error"]["fields"]) == [query.split("=")[0]]
    # controls: the largest id is only not found, a time within range is read
    missing = await client.delete(f"/waffle/api/schedule/{2**63 - 1}", headers=AUTH)
    assert missing.status_code == 404
    listed = await client.get("/waffle/api/history?since=9998-12-31T23:59:59%2B00:00", headers=AUTH)
    assert listed.status_code == 200


def cli(waffle: QuartWaffle, *args: str) -> Result:
    assert waffle.app is not None
    result: Result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    return result


def test_cli(database_url: str) -> None:
    waffle = make_waffle(database_url)
    added = cli(
        waffle,
        "schedule",
        "MAX_ITEMS=9",
        "THEME=dark",
        "--at",
        later(3600),
        "--until",
        later(7200),
        "--reason",
        "night",
    )
    assert added.exit_code == 0, added.output
    assert added.output.startswith("1\tpending\tat ")
    assert 'MAX_ITEMS=9, THEME="dark"' in added.output
    listed = cli(waffle, "scheduled")
    assert listed.output.splitlines()[0].startswith("1\tpending")
    assert '"state": "pending"' in cli(waffle, "scheduled", "--json").output
    for args in (
        ("MAX_ITEMS=0", "--at", later(3600)),
        ("MAX_ITEMS=5", "--at", "2030-01-01T00:00"),
        ("MAX_ITEMS=5", "--at", later(-60)),
        ("MAX_ITEMS=5", "--at", later(60), "--until", later(30)),
        ("NOPE=5", "--at", later(60)),
        ("MAX_ITEMS", "--at", later(60)),
        ("MAX_ITEMS=5", "--at", later(60), "--until", "0001-01-01T00:00:00+14:00"),
        ("MAX_ITEMS=5", "--at", "9999-12-31T23:59:59-23:59"),
    ):
        refused = cli(waffle, "schedule", *args)
        assert (refused.exit_code, refused.output.count("\n")) == (1, 1), (args, refused.output)
    assert len(cli(waffle, "scheduled").output.splitlines()) == 1
    cancelled = cli(waffle, "cancel", "1", "--actor", "ops")
    assert cancelled.output.startswith("1\tcancelled")
    assert "cancelled by ops" in cancelled.output
    for entry_id in ("1", "7", str(2**63)):
        refused = cli(waffle, "cancel", entry_id)
        assert (refused.exit_code, refused.output.count("\n")) == (1, 1)
    for since in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"):
        refused = cli(waffle, "history", "--since", since)
        assert (refused.exit_code, refused.output.count("\n")) == (1, 1), refused.output
        assert "year 1 to 9998" in refused.output


async def test_admin_page(served: QuartWaffle) -> None:
    waffle = served
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    client = waffle.app.test_client()
    stranger = waffle.app.test_client()
    assert (await stranger.get("/waffle/schedule")).status_code == 401
    form = {"values": "MAX_ITEMS=33", "at": later(3600), "csrf": "x"}
    assert (await stranger.post("/waffle/schedule", form=form)).status_code in (401, 403)
    csrf = await logged_in(client)
    settings_page = await text_of(await client.get("/waffle/"))
    assert 'href="/waffle/schedule" id="schedule-page"' in settings_page
    empty = await text_of(await client.get("/waffle/schedule"))
    assert 'id="schedule-none"' in empty
    form = {"csrf": csrf, "values": "MAX_ITEMS=33\nTHEME=dark", "at": later(3600), "reason": "r"}
    for bad, field in (
        ({"values": "MAX_ITEMS=0"}, "MAX_ITEMS"),
        ({"values": "NOPE=1"}, "NOPE"),
        ({"values": "MAX_ITEMS"}, "values"),
        ({"at": "2030-01-01T00:00:00"}, "at"),
        ({"until": later(60)}, "until"),
        ({"until": "0001-01-01T00:00:00+14:00"}, "until"),
    ):
        refused = await client.post("/waffle/schedule", form={**form, **bad})
        assert refused.status_code == 422, bad
        assert field in await text_of(refused), bad
    assert await waffle.scheduled() == []
    huge = await client.post("/waffle/schedule/cancel", form={"csrf": csrf, "id": str(2**63)})
    assert huge.status_code == 422
    forged = await client.post("/waffle/schedule", form={**form, "csrf": "forged"})
    assert forged.status_code == 403
    added = await client.post("/waffle/schedule", form=form)
    assert added.status_code == 303
    html = await text_of(await client.get(added.headers["Location"]))
    assert 'id="schedule-1" data-state="pending"' in html
    assert 'id="cancel-1"' in html
    (entry,) = await waffle.scheduled()
    assert (entry.values, entry.actor, entry.reason) == (
        {"MAX_ITEMS": 33, "THEME": "dark"},
        "token",
        "r",
    )
    cancelled = await client.post("/waffle/schedule/cancel", form={"csrf": csrf, "id": "1"})
    assert cancelled.status_code == 303
    assert (await waffle.scheduled())[0].state == "cancelled"
    again = await client.post("/waffle/schedule/cancel", form={"csrf": csrf, "id": "1"})
    assert again.status_code == 409
