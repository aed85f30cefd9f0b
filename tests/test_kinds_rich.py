"""The richer setting kinds (datetime, date, duration, decimal, url, list of a
kind, enum, length limits, validator functions, JSON Schema, pydantic): each
with good and bad values on every write path (Python API, admin API, page
form, CLI set, CLI apply), on real SQLite and PostgreSQL, plus what the
OpenAPI document, the page and a sync message make of them."""

from __future__ import annotations

import datetime as dt
import enum
import importlib
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from quart import Quart

from quart_waffle import DeclarationError, InvalidValueError, QuartWaffle, Setting
from quart_waffle.kinds import KINDS
from quart_waffle.settings import setting_from_conf
from quart_waffle.sync.message import (
    MAX_MESSAGE,
    Carried,
    Hint,
    decode_message,
    derive_key,
    encode_message,
)
from tests.helpers import ADMIN_TOKEN, KindCase, check_case, cli_of, client_of, declared_waffle
from tests.test_admin_page import form_in, logged_in, text_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


class Tier(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Pool(pydantic.BaseModel):
    size: int = 5
    until: dt.datetime | None = None


def not_on_sunday(day: dt.date) -> None:
    if day.weekday() == 6:
        raise ValueError("must not be a Sunday")


LIMITS_SCHEMA = {
    "type": "object",
    "properties": {"rps": {"type": "integer", "minimum": 1}},
    "required": ["rps"],
    "additionalProperties": False,
}


def declarations() -> list[Setting[Any]]:
    return [
        Setting("LAUNCH_AT", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        Setting("LAUNCH_DAY", dt.date(2026, 1, 1), validator=not_on_sunday),
        Setting("SESSION_TTL", dt.timedelta(minutes=15)),
        Setting("PRICE", Decimal("9.99"), min=0),
        Setting("WEBHOOK", "https://example.com/hook", type="url"),
        setting_from_conf(
            "PORTS", {"default": [80], "type": "list", "items": "int", "max_length": 3}
        ),
        Setting("TIER", Tier.FREE),
        Setting("NICK", "bob", min_length=2, max_length=8),
        Setting("LIMITS", {"rps": 10}, schema=LIMITS_SCHEMA),
        Setting("POOL", Pool()),
    ]


# key, a good value as JSON (API body, file), the same as typed text, the
# Python value both give, a bad value as JSON, as text, and the reason's words
CASES: list[KindCase] = [
    ("LAUNCH_AT", "2026-06-01T18:30:00+02:00", "2026-06-01T18:30:00+02:00",
     dt.datetime(2026, 6, 1, 18, 30, tzinfo=PLUS_TWO),
     "2026-06-01T18:30:00", "2026-06-01T18:30", "timezone-aware"),
    ("LAUNCH_DAY", "2026-06-02", "2026-06-02", dt.date(2026, 6, 2),
     "2026-06-07", "2026-06-07", "must not be a Sunday"),
    ("SESSION_TTL", "PT1H30M", "5400", dt.timedelta(minutes=90),
     "-PT5M", "PT", "ISO 8601 duration"),
    ("PRICE", "19.990", "19.990", Decimal("19.990"), 19.99, "-1", "not exact|at least 0"),
    ("WEBHOOK", "https://hooks.example.org/x?a=1", "https://hooks.example.org/x?a=1",
     "https://hooks.example.org/x?a=1", "ftp://example.org/", "javascript:alert(1)",
     "scheme http or https|absolute URL"),
    ("PORTS", [443, 8443], "[443, 8443]", [443, 8443], [1, 2, 3, 4], '[1, "x"]',
     "at most 3 items|item 1: must be an integer"),
    ("TIER", "pro", "PRO", Tier.PRO, "gold", "gold", 'must be one of "free", "pro"'),
    ("NICK", "alice", "alice", "alice", "a", "a-very-long-name", "characters long"),
    ("LIMITS", {"rps": 50}, '{"rps": 50}', {"rps": 50}, {"rps": 0}, '{"burst": 1}',
     "JSON Schema"),
    ("POOL", {"size": 9, "until": None}, '{"size": 9}', Pool(size=9),
     {"size": "many"}, '{"size": []}', "size: Input should be a valid integer"),
]  # fmt: skip
KEYS = [case[0] for case in CASES]


def make(database_url: str) -> QuartWaffle:
    return declared_waffle(database_url, declarations())


def reason_matches(reason: str, words: str) -> bool:
    return re.search(words, reason) is not None


# -- the table itself ----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=KEYS)
def test_good_and_bad_values(case: KindCase) -> None:
    key, _good, _text, value, *_rest = case
    setting = {s.key: s for s in declarations()}[key]
    check_case(setting, case)
    assert setting.parse_text(setting.format_text(value)) == value
    assert setting.decode(setting.encode(value)) == value
    assert json.loads(setting.encode(value)) == setting.to_json(value)


SAMPLE_DEFAULTS = {
    "datetime": dt.datetime(2026, 1, 1, tzinfo=UTC),
    "date": dt.date(2026, 1, 1),
    "duration": dt.timedelta(0),
    "decimal": Decimal("0"),
    "url": "https://example.com/",
}


def test_every_new_kind_is_one_complete_entry() -> None:
    assert list(KINDS)[7:] == list(SAMPLE_DEFAULTS)
    for name, default in SAMPLE_DEFAULTS.items():
        kind = KINDS[name]
        assert kind.widget in {"text", "number", "date", "datetime", "url"}
        setting = Setting("K", default, type=name)
        assert setting.kind == name
        if kind.python_type is not None:
            assert Setting("K", default).kind == name
        assert setting.decode(setting.encode(default)) == default
        assert setting.parse_text(setting.format_text(default)) == default


def test_exact_and_aware_values() -> None:
    price = Setting("PRICE", Decimal("0.10"))
    assert price.encode(Decimal("0.10")) == '"0.10"'  # a string: exact, trailing zero kept
    assert price.decode('"0.30"') - price.decode('"0.10"') * 3 == 0
    for wrong in ("NaN", "Infinity", "1e5000", True):
        with pytest.raises(InvalidValueError):
            price.validate(wrong)
    when = Setting("WHEN", dt.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidValueError, match="timezone-aware"):
        when.validate(dt.datetime(2026, 1, 1))  # naive
    moment = when.validate("2026-01-01T00:00:00Z")
    assert moment.utcoffset() == dt.timedelta(0)
    with pytest.raises(DeclarationError, match="timezone-aware"):
        Setting("NAIVE", dt.datetime(2026, 1, 1))
    with pytest.raises(InvalidValueError, match="without a time"):
        Setting("DAY", dt.date(2026, 1, 1)).validate(dt.datetime(2026, 1, 1, tzinfo=UTC))
    ttl = Setting("TTL", dt.timedelta(seconds=1))
    assert ttl.format_text(dt.timedelta(days=1, hours=2, seconds=0.5)) == "P1DT2H0.5S"
    assert ttl.validate(90) == dt.timedelta(seconds=90)
    assert ttl.encode(dt.timedelta(0)) == '"PT0S"'


@pytest.mark.parametrize(
    "text",
    [
        "20260601T000000Z",  # ISO 8601 basic format
        "2026-W23-1T00:00Z",  # week date
        "2026-152T00:00Z",  # ordinal date
        "2026-06-01 00:00+05:00",  # a space for the T
        "2026-06-01T00:00:00.1234567Z",  # past microseconds
        "2026-06-01T00:00:00+05:30:15",  # offset seconds
        "2026-06-01T00Z",  # no minutes
        "\u0662\u0660\u0662\u0666-06-01T00:00Z",  # other scripts' digits
    ],
)
def test_a_datetime_is_only_the_extended_format(text: str) -> None:
    when = Setting("WHEN", dt.datetime(2026, 1, 1, tzinfo=UTC))
    for attempt in (when.validate, when.parse_text):
        with pytest.raises(InvalidValueError, match="WHEN: must be an ISO 8601 date and time"):
            attempt(text)


@pytest.mark.parametrize("text", ["20260601", "2026-W23-1", "2026-152", "2026-6-1", "2026-02-30"])
def test_a_date_is_only_the_extended_format(text: str) -> None:
    day = Setting("DAY", dt.date(2026, 1, 1))
    for attempt in (day.validate, day.parse_text):
        with pytest.raises(
            InvalidValueError, match=r"DAY: must be an ISO 8601 date \(2026-11-25\)"
        ):
            attempt(text)


def test_the_extended_formats_are_read() -> None:
    when = Setting("WHEN", dt.datetime(2026, 1, 1, tzinfo=UTC))
    five = dt.timezone(dt.timedelta(hours=5))
    assert when.validate("2026-06-01T00:00Z") == dt.datetime(2026, 6, 1, tzinfo=UTC)
    assert when.validate(" 2026-06-01T00:00:00.5+05:00 ") == dt.datetime(
        2026, 6, 1, 0, 0, 0, 500000, tzinfo=five
    )
    assert Setting("DAY", dt.date(2026, 1, 1)).validate("2026-06-01") == dt.date(2026, 6, 1)


def test_declaration_mistakes() -> None:
    with pytest.raises(DeclarationError, match="min_length applies to str, url and list"):
        Setting("N", 1, min_length=1)
    with pytest.raises(DeclarationError, match="schemes apply to url"):
        Setting("S", "x", schemes=("ftp",))
    with pytest.raises(DeclarationError, match="invalid JSON Schema"):
        Setting("J", {}, schema={"type": "nope"})
    with pytest.raises(DeclarationError, match="must not be a Sunday"):
        Setting("D", dt.date(2026, 1, 4), validator=not_on_sunday)
    with pytest.raises(DeclarationError, match="items apply to list"):
        Setting("I", 1, type=int, items=int)
    ftp = Setting("MIRROR", "ftp://m.example/", type="url", schemes=("ftp", "sftp"))
    assert ftp.validate("sftp://m.example/") == "sftp://m.example/"
    with pytest.raises(InvalidValueError, match="scheme ftp or sftp"):
        ftp.validate("https://m.example/")


def test_jsonschema_extra_missing_is_a_clear_declaration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jsonschema", None)  # as if not installed
    with pytest.raises(DeclarationError, match=r"pip install 'quart-waffle\[jsonschema\]'"):
        Setting("J", {}, schema={"type": "object"})
    assert Setting("J", {}).kind == "dict"  # without a schema, nothing is needed


def test_secrets_never_echo_in_reasons() -> None:
    pool = Setting("POOL", Pool(), secret=True)
    limits = Setting("LIMITS", {"rps": 10}, schema=LIMITS_SCHEMA, secret=True)
    for setting, bad in ((pool, {"size": "hunter2"}), (limits, {"rps": "hunter2"})):
        with pytest.raises(InvalidValueError) as caught:
            setting.validate(bad)
        assert "hunter2" not in caught.value.errors[setting.key]
    # nor do a secret enum's members (they would narrow the secret down)
    tier = Setting("TIER", Tier.FREE, secret=True)
    attempts: list[Callable[[str], Any]] = [tier.validate, tier.parse_text]
    for attempt in attempts:
        with pytest.raises(InvalidValueError) as caught:
            attempt("gold")
        assert "free" not in caught.value.errors["TIER"]
        assert "pro" not in caught.value.errors["TIER"]


def test_schema_widget_and_description_come_from_the_table() -> None:
    setting = {s.key: s for s in declarations()}
    assert setting["LAUNCH_AT"].json_schema() == {"type": "string", "format": "date-time"}
    assert setting["LAUNCH_DAY"].json_schema() == {"type": "string", "format": "date"}
    assert setting["SESSION_TTL"].json_schema()["format"] == "duration"
    assert setting["PRICE"].json_schema()["format"] == "decimal"
    assert setting["WEBHOOK"].json_schema()["format"] == "uri"
    assert setting["PORTS"].json_schema() == {
        "type": "array",
        "items": {"type": "integer"},
        "maxItems": 3,
    }
    assert setting["TIER"].json_schema() == {"type": "string", "enum": ["free", "pro"]}
    assert setting["NICK"].json_schema() == {"type": "string", "minLength": 2, "maxLength": 8}
    assert setting["POOL"].json_schema()["properties"]["size"]["type"] == "integer"
    widgets = {key: s.widget for key, s in setting.items()}
    assert widgets == {
        "LAUNCH_AT": "datetime",
        "LAUNCH_DAY": "date",
        "SESSION_TTL": "text",
        "PRICE": "number",
        "WEBHOOK": "url",
        "PORTS": "textarea",
        "TIER": "select",
        "NICK": "text",
        "LIMITS": "textarea",
        "POOL": "textarea",
    }
    assert setting["TIER"].describe()["choices"] == ["free", "pro"]
    assert setting["PORTS"].kind == "list[int]"


@pytest.mark.parametrize(("key", "good", "text", "value", "bad", "bad_text", "words"), CASES)
def test_the_schema_in_the_openapi_document_fits_what_the_api_serves(
    key: str, good: Any, text: str, value: Any, bad: Any, bad_text: str, words: str
) -> None:
    jsonschema: Any = importlib.import_module("jsonschema")  # no type stubs
    setting = {s.key: s for s in declarations()}[key]
    schema = setting.json_schema()
    checker = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert list(checker.iter_errors(setting.to_json(value))) == []
    assert list(checker.iter_errors(setting.to_json(setting.default))) == []
    if key == "PRICE":
        assert list(checker.iter_errors("abc1")) != []


def test_a_carried_message_decodes_to_what_a_catch_up_gives() -> None:
    setting = {s.key: s for s in declarations()}
    sent: dict[str, Any] = {
        "LAUNCH_AT": dt.datetime(2026, 6, 1, 18, 30, 0, 250000, tzinfo=PLUS_TWO),
        "PRICE": Decimal("19.990"),
        "SESSION_TTL": dt.timedelta(hours=1, microseconds=5),
        "TIER": Tier.PRO,
        "POOL": Pool(size=3, until=dt.datetime(2026, 1, 1, tzinfo=UTC)),
    }
    key = derive_key("sync-secret")
    changes = {name: setting[name].encode(value) for name, value in sent.items()}
    payload = encode_message(
        Hint(7, "w1"), changes, key=key, store="store-a", max_payload=MAX_MESSAGE
    )
    received = decode_message(payload, key, "store-a")
    assert isinstance(received, Carried)
    for name, text in received.changes:
        assert text is not None
        value = setting[name].decode(text)
        assert value == sent[name]
        assert type(value) is type(sent[name])
        if isinstance(value, dt.datetime):
            assert value.utcoffset() == sent[name].utcoffset()
        if isinstance(value, Decimal):
            assert str(value) == "19.990"


# -- every write path, on SQLite and PostgreSQL ----------------------------


async def _state(waffle: QuartWaffle) -> tuple[int, dict[str, Any]]:
    await waffle.refresh()
    return waffle.revision, {key: waffle.get(key) for key in KEYS}


async def test_python_api(database_url: str) -> None:
    waffle = make(database_url)
    async with waffle.connected():
        for key, good, _text, value, bad, _bad_text, words in CASES:
            before = await _state(waffle)
            with pytest.raises(InvalidValueError) as caught:
                await waffle.update({key: bad})
            assert reason_matches(caught.value.errors[key], words)
            assert await _state(waffle) == before
            await waffle.update({key: good})
            assert waffle.get(key) == value
            assert waffle.app is not None
            assert waffle.app.config[key] == value
        # a second worker reads back the same Python values from the store
        other = make(database_url)
        async with other.connected():
            for key, *_rest in CASES:
                assert other.get(key) == waffle.get(key)
                assert type(other.get(key)) is type(waffle.get(key))


async def test_admin_api(database_url: str) -> None:
    waffle = make(database_url)
    async with client_of(waffle) as client:
        for key, good, _text, value, bad, _bad_text, words in CASES:
            before = await _state(waffle)
            response = await client.put(
                f"/waffle/api/settings/{key}", json={"value": bad}, headers=AUTH
            )
            assert response.status_code == 422
            error = (await response.get_json())["error"]
            assert reason_matches(error["fields"][key], words), error
            assert await _state(waffle) == before
            response = await client.patch(
                "/waffle/api/settings", json={"values": {key: good}}, headers=AUTH
            )
            assert response.status_code == 200, await response.get_json()
            assert waffle.get(key) == value
        listing = await (await client.get("/waffle/api/settings", headers=AUTH)).get_json()
        served = {item["key"]: item["value"] for item in listing["settings"]}
        assert served["LAUNCH_AT"] == "2026-06-01T18:30:00+02:00"
        assert served["PRICE"] == "19.990"
        assert served["SESSION_TTL"] == "PT1H30M"
        assert served["TIER"] == "pro"
        assert served["POOL"] == {"size": 9, "until": None}
        history = await (await client.get("/waffle/api/history", headers=AUTH)).get_json()
        assert history  # every value of the new kinds can be shown in history
        document = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
        assert {s.key: s.json_schema() for s in declarations()} in list(_properties(document))


def _properties(node: Any) -> Any:
    """Every ``properties`` object in an OpenAPI document."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield node["properties"]
        for child in node.values():
            yield from _properties(child)
    elif isinstance(node, list):
        for child in node:
            yield from _properties(child)


async def test_page_form(database_url: str) -> None:
    waffle = make(database_url)
    async with client_of(waffle) as client:
        await logged_in(client)
        html = await text_of(await client.get("/waffle/"))
        assert 'type="date" id="value-LAUNCH_DAY"' in html
        assert 'type="url" id="value-WEBHOOK"' in html
        assert 'placeholder="2026-11-25T18:00:00+00:00"' in html
        assert '<textarea id="value-PORTS"' in html
        assert 'maxlength="8"' in html
        # every bad value in one post: each is named with its reason, nothing is stored
        before = await _state(waffle)
        bad_texts = {key: bad_text for key, _g, _t, _v, _b, bad_text, _w in CASES}
        response = await client.post("/waffle/save", form=form_in(html, **bad_texts))
        assert response.status_code == 422
        page = await text_of(response)
        for key, *_rest, words in CASES:
            shown = re.search(rf'id="error-{key}" role="alert">([^<]*)<', page)
            assert shown is not None, key
            assert reason_matches(shown.group(1).replace("&#34;", '"'), words), shown.group(1)
        assert await _state(waffle) == before
        texts = {key: text for key, _good, text, *_rest in CASES}
        response = await client.post("/waffle/save", form=form_in(html, **texts))
        assert response.status_code == 303, await text_of(response)
        for key, _good, _text, value, *_rest in CASES:
            assert waffle.get(key) == value
        # the form as drawn posts back unchanged: what it shows reads back as the value
        html = await text_of(await client.get("/waffle/"))
        revision = waffle.revision
        assert (await client.post("/waffle/save", form=form_in(html))).status_code == 303
        assert waffle.revision == revision


def test_cli_set_export_apply(database_url: str, tmp_path: Path) -> None:
    run = cli_of(make(database_url))

    for key, _good, _text, _value, _bad, bad_text, words in CASES:
        result = run("set", f"{key}={bad_text}")
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("Error: ") or key in line
        assert reason_matches(line, words), line
        assert f"{key}:" in line
        assert json.loads(run("export").output)["revision"] == 0
    assignments = [f"{key}={text}" for key, _good, text, *_rest in CASES]
    assert run("set", *assignments).exit_code == 0
    exported = json.loads(run("export").output)
    assert exported["settings"]["PRICE"] == "19.990"
    assert exported["settings"]["LAUNCH_AT"] == "2026-06-01T18:30:00+02:00"
    assert run("get", "SESSION_TTL").output == '"PT1H30M"\n'
    # the export applies back as it is (nothing to change), a bad value is refused
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported))
    assert run("apply", str(path)).exit_code == 0, run("apply", str(path)).output
    path.write_text(json.dumps({"settings": {key: bad for key, _g, _t, _v, bad, *_r in CASES}}))
    for command in ("apply", "import"):
        result = run(command, str(path))
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()
        for key, *_rest, words in CASES:
            assert f"{key}:" in line
            assert reason_matches(line, words), line
    assert json.loads(run("export").output)["revision"] == exported["revision"]


async def test_a_stored_value_that_no_longer_fits_is_served_as_the_default(
    database_url: str,
) -> None:
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = {
        "LAUNCH_AT": {"default": "soon"},
        "PRICE": {"default": 1.5},
        "TIER": {"default": "gold"},
    }
    old = QuartWaffle(app, database_url=database_url, watchtype="none")
    async with old.connected():
        await old.update({"LAUNCH_AT": "2026-06-01T18:30:00", "PRICE": 2.5, "TIER": "gold"})
    waffle = make(database_url)
    async with waffle.connected():
        for key in ("LAUNCH_AT", "PRICE", "TIER"):
            assert waffle.get(key) == waffle.setting(key).default
            assert key in waffle.snapshot.rejected
        assert "timezone-aware" in waffle.snapshot.rejected["LAUNCH_AT"]
        assert "not exact" in waffle.snapshot.rejected["PRICE"]


def test_override_checks_values_as_a_write_does(tmp_path: Path) -> None:
    waffle = make(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}")
    with pytest.raises(InvalidValueError, match="not exact"):
        waffle.override(PRICE=0.1)
    with waffle.override(LAUNCH_AT="2026-06-01T18:30:00Z", PRICE="1.50", TIER="pro"):
        assert waffle.get("LAUNCH_AT") == dt.datetime(2026, 6, 1, 18, 30, tzinfo=UTC)
        assert waffle.get("PRICE") == Decimal("1.50")
        assert waffle.get("TIER") is Tier.PRO
    assert not (tmp_path / "never-opened.db").exists()
