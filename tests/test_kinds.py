"""The table of setting kinds: text forms, schemas, widgets, strict numbers and
the bounds every value obeys (pure units)."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest

from quart_waffle import DeclarationError, InvalidValueError, Setting
from quart_waffle.kinds import (
    KINDS,
    MAX_DEPTH,
    MAX_VALUE_BYTES,
    load_json,
    parse_integer,
    parse_number,
    storable_text,
)
from quart_waffle.settings import SECRET_MASK, display_value

SAMPLES: list[tuple[Setting[Any], Any]] = [
    (Setting("S", ""), "  spaced  "),
    (Setting("S", ""), ""),
    (Setting("I", 0), -(2**63)),
    (Setting("F", 0.0), 1e16),
    (Setting("F", 0.0), 0.1),
    (Setting("F", 0.0), -2.5e-300),
    (Setting("B", False), True),
    (Setting("B", False), False),
    (Setting("L", [1]), ["a", {"b": [None, 1.5]}]),
    (Setting("D", {}), {"é": "ü", "n": 1}),
    (Setting("J", None, type="json"), None),
]


@pytest.mark.parametrize(("setting", "value"), SAMPLES)
def test_format_text_is_read_back_by_parse_text(setting: Setting[Any], value: Any) -> None:
    assert setting.parse_text(setting.format_text(value)) == value


def test_every_kind_is_one_complete_entry() -> None:
    assert list(KINDS)[:7] == ["str", "int", "float", "bool", "list", "dict", "json"]
    for name, kind in list(KINDS.items())[:7]:
        assert kind.name == name
        assert kind.widget in {"text", "number", "checkbox", "textarea"}
        default = None if kind.python_type is None else kind.python_type()
        assert Setting("K", default, type=name).kind == name
        assert Setting("K", default).kind == name


@pytest.mark.parametrize(
    ("setting", "widget"),
    [
        (Setting("S", "x"), "text"),
        (Setting("I", 1), "number"),
        (Setting("F", 1.0), "number"),
        (Setting("B", True), "checkbox"),
        (Setting("B", True, choices=(True,)), "checkbox"),
        (Setting("D", {}), "textarea"),
        (Setting("C", "a", choices=("a", "b")), "select"),
        (Setting("P", "a", choices=("a", "b"), secret=True), "password"),
    ],
)
def test_widget(setting: Setting[Any], widget: str) -> None:
    assert setting.widget == widget


def test_json_schema_states_type_range_and_choices() -> None:
    assert Setting("N", 5, min=1, max=10, description="n").json_schema() == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "description": "n",
    }
    assert Setting("C", "a", choices=("a", "b")).json_schema() == {
        "type": "string",
        "enum": ["a", "b"],
    }
    assert Setting("J", None, type="json").json_schema() == {}


def test_a_secret_never_discloses_its_choices() -> None:
    setting = Setting("P", "alpha", choices=("alpha", "beta"), secret=True)
    assert "enum" not in setting.json_schema()
    assert setting.describe()["choices"] is None
    assert setting.describe()["default"] == SECRET_MASK
    with pytest.raises(InvalidValueError) as caught:
        setting.validate("gamma")
    assert caught.value.errors == {"P": "must be one of the allowed values"}


def test_display_masks_secrets_and_keys_no_longer_declared() -> None:
    declarations = {"P": Setting("P", "x", secret=True), "S": Setting("S", "x")}
    assert display_value(declarations, "S", "shown") == "shown"
    assert display_value(declarations, "P", "hidden") == SECRET_MASK
    assert display_value(declarations, "GONE", "hidden") == SECRET_MASK


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), (" -7 ", -7), ("+3", 3), ("\t0\n", 0), ("007", 7)],
)
def test_integers_people_mean(text: str, expected: int) -> None:
    assert parse_integer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", 0.5), (" -1e3 ", -1000.0), (".5", 0.5), ("5.", 5.0), ("1E+16", 1e16), ("7", 7.0)],
)
def test_numbers_people_mean(text: str, expected: float) -> None:
    assert parse_number(text) == expected


NOT_NUMBERS = [
    "1_0",
    "²",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() takes it
    "\uff11\uff12",  # fullwidth 12: int() takes it
    "\u0968",  # DEVANAGARI DIGIT TWO
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "0x10",
    "1e",
    "",
    "   ",
    "\u30001\u3000",  # ideographic spaces: int() strips them
    "1 0",
    "--1",
]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_nothing_else_is_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_number(text)
    with pytest.raises(ValueError, match="must be an integer"):
        parse_integer(text)


@pytest.mark.parametrize("text", ["4.5", "1e3", "9" * 31])
def test_integer_text_refuses_fractions_exponents_and_absurd_lengths(text: str) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        parse_integer(text)


def test_settings_parse_numbers_through_the_one_parser() -> None:
    for text in NOT_NUMBERS:
        for setting in (Setting("I", 1), Setting("F", 1.0)):
            with pytest.raises(InvalidValueError) as caught:
                setting.parse_text(text)
            assert list(caught.value.errors) == [setting.key]
    with pytest.raises(InvalidValueError, match="too large"):
        Setting("F", 1.0).parse_text("1e400")
    with pytest.raises(InvalidValueError, match="between"):
        Setting("I", 1).parse_text(str(2**63))


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: list[tuple[Setting[Any], Any, str]] = [
    (Setting("J", None, type="json"), _nested(MAX_DEPTH + 1), f"at most {MAX_DEPTH}"),
    (Setting("J", None, type="json"), _nested(100_000), f"at most {MAX_DEPTH}"),
    (Setting("D", {}), {"a": _nested(MAX_DEPTH)}, f"at most {MAX_DEPTH}"),
    (Setting("S", ""), "x" * (MAX_VALUE_BYTES + 1), f"at most {MAX_VALUE_BYTES} bytes"),
    (Setting("S", ""), "é" * (MAX_VALUE_BYTES // 2), f"at most {MAX_VALUE_BYTES} bytes"),
    (Setting("L", []), ["x" * 1000] * 70, f"at most {MAX_VALUE_BYTES} bytes"),
    (Setting("S", ""), "a\ud800b", "lone surrogates"),
    (Setting("L", []), ["\udfff"], "lone surrogates"),
    (Setting("D", {}), {"\ud83d": 1}, "lone surrogates"),
    (Setting("F", 1.0), 10**400, "too large"),
    (Setting("F", 1.0), -(10**309), "too large"),
    (Setting("I", 1), 2**63, "between"),
    (Setting("I", 1), 10**5000, "between"),
    (Setting("J", None, type="json"), [10**5000], "between"),
    (Setting("D", {}), {"n": float("inf")}, "NaN or infinity"),
    (Setting("L", []), [float("nan")], "NaN or infinity"),
    (Setting("D", {}), {1: "a"}, "keys must be strings"),
]


@pytest.mark.parametrize(
    ("setting", "value", "reason"), HOSTILE, ids=[f"{case[0].key}-{case[2]}" for case in HOSTILE]
)
def test_hostile_values_are_refused_with_the_key_and_reason(
    setting: Setting[Any], value: Any, reason: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        setting.validate(value)
    assert list(caught.value.errors) == [setting.key]
    assert reason in caught.value.errors[setting.key]


def test_the_bounds_themselves_are_allowed() -> None:
    assert Setting("J", None, type="json").validate(_nested(MAX_DEPTH)) == _nested(MAX_DEPTH)
    big = "x" * (MAX_VALUE_BYTES - 2)  # two bytes of quotes
    assert Setting("S", "").validate(big) == big
    assert Setting("F", 1.0).validate(10**300) == 1e300
    assert Setting("I", 1).validate(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "at most"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"at most {MAX_DEPTH}"),
        ('["\\ud800"]', "lone surrogates"),
        ("[NaN]", "NaN is not JSON"),
        ("1e400", "NaN or infinity"),
        ("[" + "1," * MAX_VALUE_BYTES + "1]", "bytes"),
        ("{broken", "must be valid JSON"),
        ("1" * 5000, "between"),
    ],
)
def test_load_json_refuses_what_cannot_be_stored(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_json(text)


def test_decode_never_raises_anything_but_invalid_value() -> None:
    setting = Setting("J", None, type="json")
    for text in ["[" * 100_000, '"\\udc00"', "[" * 40 + "]" * 40, "", "\x00", "1" * 5000]:
        with pytest.raises(InvalidValueError) as caught:
            setting.decode(text)
        assert list(caught.value.errors) == ["J"]
    with pytest.raises(InvalidValueError, match="must be an integer"):
        Setting("I", 1).decode('"now a string"')


def test_a_default_out_of_bounds_is_a_declaration_error() -> None:
    with pytest.raises(DeclarationError, match="lone surrogates"):
        Setting("S", "\ud800")


@pytest.mark.parametrize(
    ("setting", "typed"),
    [
        (Setting("PIN", 1234, secret=True), "12x4-hunter2"),
        (Setting("RATIO", 0.5, secret=True), "0,5hunter2"),
        (Setting("FLAG", False, secret=True), "hunter2"),
        (Setting("TOKENS", {}, secret=True), '{"hunter2": '),
    ],
)
def test_a_typing_error_never_repeats_the_text(setting: Setting[Any], typed: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        setting.parse_text(typed)
    assert "hunter2" not in str(caught.value)


def test_no_digit_of_another_script_is_a_number() -> None:
    digits = [
        chr(point)
        for point in range(0x80, sys.maxunicode + 1)
        if unicodedata.category(chr(point)) == "Nd" or chr(point).isdigit()
    ]
    assert len(digits) > 600  # every script's, superscripts, circled, ...
    for digit in digits:
        for parse in (parse_integer, parse_number):
            with pytest.raises(ValueError, match="must be"):
                parse(digit)
            with pytest.raises(ValueError, match="must be"):
                parse("1" + digit)


def test_storable_text_replaces_what_no_column_holds() -> None:
    assert storable_text("a\x00b\ud800c😀") == "a\ufffdb\ufffdc😀"
