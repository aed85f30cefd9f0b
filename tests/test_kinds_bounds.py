"""Bounds on datetime, date and duration settings: declared through the table
of kinds, refused when they make no sense, shown by the OpenAPI document and
the page, and every write path (Python API, admin API, page form, CLI set,
promotion apply from the CLI, the API and the page, scheduled changes from
the API, the CLI and the page) refuses an out-of-bounds value naming the key
and the reason, with nothing stored, on real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quart_waffle import DeclarationError, InvalidValueError, QuartWaffle, Setting
from quart_waffle.settings import setting_from_conf
from tests.helpers import ADMIN_TOKEN, KindCase, check_case, cli_of, client_of, declared_waffle
from tests.test_admin_page import form_in, logged_in, text_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UTC = dt.UTC


def declarations() -> list[Setting[Any]]:
    return [
        Setting(
            "LAUNCH_AT",
            dt.datetime(2026, 6, 1, tzinfo=UTC),
            min="2026-01-01T00:00:00+00:00",
            max=dt.datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
        ),
        # as a configuration file declares it: the bounds as ISO 8601 text
        setting_from_conf(
            "LAUNCH_DAY", {"default": "2026-06-01", "type": "date", "min": "2026-01-01"}
        ),
        Setting(
            "SESSION_TTL",
            dt.timedelta(minutes=15),
            min=dt.timedelta(minutes=1),
            max="PT1H",
        ),
    ]


# key, a good value as JSON, the same as typed text, the Python value both
# give, a value out of bounds as JSON, another as text, and the reason's words
CASES: list[KindCase] = [
    # 00:30 at +01:00 is 23:30 the day before in UTC: before the bound as a moment
    ("LAUNCH_AT", "2026-06-01T18:30:00+02:00", "2026-06-01T18:30:00+02:00",
     dt.datetime(2026, 6, 1, 16, 30, tzinfo=UTC),
     "2026-01-01T00:30:00+01:00", "2027-01-01T00:00:00+00:00",
     "must not be (before 2026-01-01T00:00:00\\+00:00|after 2026-12-31T23:59:00\\+00:00)"),
    ("LAUNCH_DAY", "2026-06-02", "2026-06-02", dt.date(2026, 6, 2),
     "2025-12-31", "2025-06-01", "must not be before 2026-01-01"),
    ("SESSION_TTL", "PT30M", "1800", dt.timedelta(minutes=30),
     30, "PT2H", "must be at (least PT1M|most PT1H)"),
]  # fmt: skip
KEYS = [case[0] for case in CASES]
GOOD = {key: good for key, good, *_rest in CASES}
VALUES = {key: value for key, _good, _text, value, *_rest in CASES}
BAD = {key: bad for key, _good, _text, _value, bad, *_rest in CASES}
BAD_TEXTS = {key: bad_text for key, *_rest, bad_text, _words in CASES}
WORDS = {key: words for key, *_rest, words in CASES}


def make(database_url: str) -> QuartWaffle:
    return declared_waffle(database_url, declarations())


def refused_for(key: str, reason: str) -> bool:
    return re.search(WORDS[key], reason) is not None


def later(seconds: float) -> str:
    return (dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)).isoformat()


async def _state(waffle: QuartWaffle) -> tuple[int, dict[str, Any], int, int]:
    """Revision, values, history and schedule sizes, as the store has them."""
    await waffle.refresh()
    values = {key: waffle.get(key) for key in KEYS}
    return waffle.revision, values, len(await waffle.history()), len(await waffle.scheduled())


# -- the declaration ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=KEYS)
def test_good_and_bad_values(case: KindCase) -> None:
    key, *_rest, bad, _bad_text, _words = case
    setting = {s.key: s for s in declarations()}[key]
    # a stored value is held to the bounds too
    check_case(setting, case, [(setting.decode, json.dumps(bad))])


def test_the_bounds_themselves_are_allowed() -> None:
    setting = {s.key: s for s in declarations()}
    assert setting["LAUNCH_AT"].validate("2026-01-01T01:00:00+01:00") == dt.datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert setting["LAUNCH_AT"].validate("2026-12-31T23:59:00Z").year == 2026
    assert setting["LAUNCH_DAY"].validate("2026-01-01") == dt.date(2026, 1, 1)
    assert setting["LAUNCH_DAY"].validate("9998-12-31").year == 9998  # no max declared
    assert setting["SESSION_TTL"].validate(60) == dt.timedelta(minutes=1)
    assert setting["SESSION_TTL"].validate("PT1H") == dt.timedelta(hours=1)
    # the bounds are normalised as values are: ISO text read, offsets kept
    assert setting["LAUNCH_AT"].min == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert setting["LAUNCH_DAY"].min == dt.date(2026, 1, 1)
    assert setting["SESSION_TTL"].max == dt.timedelta(hours=1)


AWARE = dt.datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: Setting("K", AWARE, min=dt.datetime(2026, 1, 1)), "min must be timezone-aware"),
        (lambda: Setting("K", AWARE, max="2027-01-01T00:00:00"), "max must be timezone-aware"),
        (
            lambda: Setting("K", AWARE, min="2026-03-01T00:00Z", max="2026-02-01T00:00Z"),
            "min 2026-03-01T00:00:00\\+00:00 is above max 2026-02-01T00:00:00\\+00:00",
        ),
        (lambda: Setting("K", AWARE, min=5), "min must be an ISO 8601 date and time.*got int"),
        (lambda: Setting("K", AWARE, min=dt.date(2026, 1, 1)), "min must be .* got date"),
        (lambda: Setting("K", AWARE, min="soon"), "min must be an ISO 8601 date and time"),
        (lambda: Setting("K", dt.date(2026, 6, 1), min=AWARE), "min must be a date without"),
        (lambda: Setting("K", dt.date(2026, 6, 1), max=1.5), "max must be an ISO 8601 date"),
        (
            lambda: Setting("K", dt.date(2026, 6, 1), min="2026-07-01", max="2026-06-30"),
            "min 2026-07-01 is above max 2026-06-30",
        ),
        (lambda: Setting("K", dt.timedelta(1), min="PT-1M"), "min must be an ISO 8601 duration"),
        (lambda: Setting("K", dt.timedelta(1), max=dt.timedelta(-1)), "max must not be negative"),
        (lambda: Setting("K", dt.timedelta(1), min="PT2H", max="PT1H"), "min PT2H is above max"),
        (lambda: Setting("K", dt.timedelta(1), min=True), "min must be an ISO 8601 duration"),
        (lambda: Setting("K", 5, min=10, max=1), "min 10 is above max 1"),
        # an integer beyond any float
        (
            lambda: Setting("K", dt.timedelta(1), max=10**400),
            "max must be a finite number, got one",
        ),
        (lambda: Setting("K", dt.timedelta(1), min=-(10**400)), "min must be a finite number"),
        (lambda: Setting("K", 1.5, max=10**400), "max must be a finite number, got one too large"),
        (lambda: Setting("K", 5, min=-(10**400)), "min must be a finite number, got one too large"),
        # the default itself must fit
        (lambda: Setting("K", AWARE, max="2026-01-01T00:00Z"), "must not be after"),
        (lambda: Setting("K", dt.timedelta(0), min=1), "must be at least PT1S"),
        # nor do min/max apply where values have no order
        (lambda: Setting("K", "x", min="a"), "min/max apply to int, float, decimal, datetime"),
        (
            lambda: setting_from_conf("K", {"default": "2026-06-01", "type": "date", "max": "x"}),
            "K: max must be an ISO 8601 date",
        ),
    ],
)
def test_nonsense_bounds_fail_at_declaration(declare: Callable[[], Any], message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        declare()


def test_a_secret_keeps_its_bounds_to_itself() -> None:
    setting = Setting("K", dt.date(2026, 6, 1), min="2026-01-01", max="2026-12-31", secret=True)
    with pytest.raises(InvalidValueError) as caught:
        setting.validate("2027-01-01")
    assert caught.value.errors == {"K": "must be within the allowed range"}
    assert "formatMinimum" not in setting.json_schema()
    assert (setting.describe()["min"], setting.describe()["max"]) == (None, None)


def test_schema_and_description_come_from_the_table() -> None:
    setting = {s.key: s for s in declarations()}
    assert setting["LAUNCH_AT"].json_schema() == {
        "type": "string",
        "format": "date-time",
        "formatMinimum": "2026-01-01T00:00:00+00:00",
        "formatMaximum": "2026-12-31T23:59:00+00:00",
    }
    assert setting["LAUNCH_DAY"].json_schema() == {
        "type": "string",
        "format": "date",
        "formatMinimum": "2026-01-01",
    }
    assert setting["SESSION_TTL"].json_schema()["formatMaximum"] == "PT1H"
    described = setting["SESSION_TTL"].describe()
    assert (described["min"], described["max"]) == ("PT1M", "PT1H")
    assert Setting("N", 5, min=1, max=10).json_schema() == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
    }


@pytest.mark.parametrize("huge", [10**320, -(10**400)])
def test_a_duration_beyond_any_float_is_refused(huge: int) -> None:
    with pytest.raises(InvalidValueError, match="SESSION_TTL: must be a finite number, got one"):
        {s.key: s for s in declarations()}["SESSION_TTL"].validate(huge)


async def test_the_admin_api_refuses_a_duration_beyond_any_float(sqlite_url: str) -> None:
    waffle = make(sqlite_url)
    huge = {"SESSION_TTL": 10**320}
    async with client_of(waffle) as client:
        before = await _state(waffle)
        attempts = [
            client.put("/waffle/api/settings/SESSION_TTL", json={"value": 10**320}, headers=AUTH),
            client.patch("/waffle/api/settings", json={"values": huge}, headers=AUTH),
            client.post("/waffle/api/apply", json={"settings": huge}, headers=AUTH),
            client.post(
                "/waffle/api/apply", json={"settings": huge, "dry_run": True}, headers=AUTH
            ),
            client.post(
                "/waffle/api/schedule", json={"values": huge, "at": later(3600)}, headers=AUTH
            ),
        ]
        for attempt in attempts:
            refused = await attempt
            assert refused.status_code == 422
            fields = (await refused.get_json())["error"]["fields"]
            assert fields == {"SESSION_TTL": "must be a finite number, got one too large"}
        assert await _state(waffle) == before


# -- every write path, on SQLite and PostgreSQL --------------------------------


async def test_python_api(database_url: str) -> None:
    waffle = make(database_url)
    async with waffle.connected():
        for key in KEYS:
            before = await _state(waffle)
            with pytest.raises(InvalidValueError) as caught:
                await waffle.update({key: BAD[key]})
            assert refused_for(key, caught.value.errors[key]), caught.value.errors
            with pytest.raises(InvalidValueError):
                await waffle.update({**GOOD, key: BAD[key]})  # one bad value stops them all
            assert await _state(waffle) == before
        await waffle.update(GOOD)
        assert {key: waffle.get(key) for key in KEYS} == VALUES


async def test_admin_api_openapi_and_page(database_url: str) -> None:
    waffle = make(database_url)
    async with client_of(waffle) as client:
        before = await _state(waffle)
        for key in KEYS:
            refused = await client.put(
                f"/waffle/api/settings/{key}", json={"value": BAD[key]}, headers=AUTH
            )
            assert refused.status_code == 422
            fields = (await refused.get_json())["error"]["fields"]
            assert refused_for(key, fields[key]), fields
        refused = await client.patch("/waffle/api/settings", json={"values": BAD}, headers=AUTH)
        assert refused.status_code == 422
        fields = (await refused.get_json())["error"]["fields"]
        assert all(refused_for(key, fields[key]) for key in KEYS), fields
        assert await _state(waffle) == before

        document = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
        assert '"formatMinimum": "2026-01-01T00:00:00+00:00"' in json.dumps(document)
        assert '"formatMaximum": "PT1H"' in json.dumps(document)

        await logged_in(client)
        html = await text_of(await client.get("/waffle/"))
        assert re.search(r'type="date" id="value-LAUNCH_DAY"[^>]* min="2026-01-01"', html)
        assert "datetime ≥ 2026-01-01T00:00:00+00:00 ≤ 2026-12-31T23:59:00+00:00" in html
        assert "duration ≥ PT1M ≤ PT1H" in html
        response = await client.post("/waffle/save", form=form_in(html, **BAD_TEXTS))
        assert response.status_code == 422
        page = await text_of(response)
        for key in KEYS:
            shown = re.search(rf'id="error-{key}" role="alert">([^<]*)<', page)
            assert shown is not None, key
            assert refused_for(key, shown.group(1)), shown.group(1)
        assert await _state(waffle) == before

        texts = {key: text for key, _good, text, *_rest in CASES}
        response = await client.post("/waffle/save", form=form_in(html, **texts))
        assert response.status_code == 303, await text_of(response)
        response = await client.patch("/waffle/api/settings", json={"values": GOOD}, headers=AUTH)
        assert response.status_code == 200
        assert waffle.get("LAUNCH_DAY") == dt.date(2026, 6, 2)


async def test_promotion_apply(database_url: str) -> None:
    waffle = make(database_url)
    async with client_of(waffle) as client:
        before = await _state(waffle)
        refused = await client.post("/waffle/api/apply", json={"settings": BAD}, headers=AUTH)
        assert refused.status_code == 422
        fields = (await refused.get_json())["error"]["fields"]
        assert all(refused_for(key, fields[key]) for key in KEYS), fields
        csrf = await logged_in(client)
        form = {"csrf": csrf, "settings": json.dumps(BAD), "action": "apply", "expected": "0"}
        refused = await client.post("/waffle/promote", form=form)
        assert refused.status_code == 422
        page = await text_of(refused)
        assert all(key in page and re.search(WORDS[key], page) for key in KEYS), page
        assert await _state(waffle) == before
        applied = await client.post("/waffle/api/apply", json={"settings": GOOD}, headers=AUTH)
        assert applied.status_code == 200, await applied.get_json()
        assert waffle.get("SESSION_TTL") == dt.timedelta(minutes=30)


async def test_schedule_from_the_api_and_the_page(database_url: str) -> None:
    waffle = make(database_url)
    async with client_of(waffle) as client:
        before = await _state(waffle)
        for key in KEYS:
            body = {"values": {key: BAD[key]}, "at": later(3600), "until": later(7200)}
            refused = await client.post("/waffle/api/schedule", json=body, headers=AUTH)
            assert refused.status_code == 422
            fields = (await refused.get_json())["error"]["fields"]
            assert refused_for(key, fields[key]), fields
        csrf = await logged_in(client)
        for key in KEYS:
            form = {"csrf": csrf, "values": f"{key}={BAD_TEXTS[key]}", "at": later(3600)}
            refused = await client.post("/waffle/schedule", form=form)
            assert refused.status_code == 422
            page = await text_of(refused)
            assert key in page
            assert re.search(WORDS[key], page), page
        assert await _state(waffle) == before
        body = {"values": GOOD, "at": later(3600)}
        added = await client.post("/waffle/api/schedule", json=body, headers=AUTH)
        assert added.status_code == 201, await added.get_json()


def test_cli_set_apply_and_schedule(database_url: str, tmp_path: Path) -> None:
    run = cli_of(make(database_url))

    def refused_in_one_line(result: Any, *keys: str) -> None:
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()
        for key in keys:
            assert f"{key}:" in line
            assert re.search(WORDS[key], line), line

    for key in KEYS:
        refused_in_one_line(run("set", f"{key}={BAD_TEXTS[key]}"), key)
        refused_in_one_line(run("schedule", f"{key}={BAD_TEXTS[key]}", "--at", later(3600)), key)
    path = tmp_path / "promote.json"
    path.write_text(json.dumps({"settings": BAD}))
    for command in ("apply", "import"):
        refused_in_one_line(run(command, str(path)), *KEYS)
    assert json.loads(run("export").output)["revision"] == 0
    assert run("history").output.strip() == ""
    assert run("scheduled").output.strip() == ""
    assignments = [f"{key}={text}" for key, _good, text, *_rest in CASES]
    assert run("set", *assignments).exit_code == 0
    assert run("get", "SESSION_TTL").output == '"PT30M"\n'
