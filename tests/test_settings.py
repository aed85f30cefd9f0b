from __future__ import annotations

from typing import Any

import pytest

from quart_waffle import DeclarationError, InvalidValueError, Setting
from quart_waffle.settings import SECRET_MASK, declare, setting_from_conf

GOOD: list[tuple[Setting[Any], Any, Any]] = [
    (Setting("S", "x"), "hello", "hello"),
    (Setting("S", "x"), "", ""),
    (Setting("I", 1), -7, -7),
    (Setting("F", 1.0), 3, 3.0),
    (Setting("F", 1.0), 2.5, 2.5),
    (Setting("B", False), True, True),
    (Setting("L", [1]), ["a", {"b": 2}], ["a", {"b": 2}]),
    (Setting("D", {"a": 1}), {"x": [1, 2]}, {"x": [1, 2]}),
    (Setting("J", None, type="json"), [1, "two", None], [1, "two", None]),
    (Setting("J", None, type="json"), 5, 5),
    (Setting("C", "a", choices=("a", "b")), "b", "b"),
    (Setting("N", 5, min=1, max=10), 1, 1),
    (Setting("N", 5, min=1, max=10), 10, 10),
    (Setting("R", 0.5, min=0.0, max=1.0), 0.25, 0.25),
]

BAD: list[tuple[Setting[Any], Any, str]] = [
    (Setting("S", "x"), 5, "must be a string, got int"),
    (Setting("I", 1), "5", "must be an integer, got str"),
    (Setting("I", 1), True, "must be an integer, got bool"),
    (Setting("I", 1), 1.5, "must be an integer, got float"),
    (Setting("F", 1.0), float("nan"), "must be a finite number"),
    (Setting("F", 1.0), float("inf"), "must be a finite number"),
    (Setting("F", 1.0), False, "must be a finite number, got bool"),
    (Setting("B", False), "false", "must be true or false, got str"),
    (Setting("B", False), 1, "must be true or false, got int"),
    (Setting("L", [1]), {"a": 1}, "must be a JSON list, got dict"),
    (Setting("L", [1]), [object()], "must contain only JSON values, got object"),
    (Setting("D", {"a": 1}), [1], "must be a JSON object, got list"),
    (Setting("J", None, type="json"), {1, 2}, "must contain only JSON values, got set"),
    (Setting("C", "a", choices=("a", "b")), "c", 'must be one of "a", "b"'),
    (Setting("N", 5, min=1, max=10), 0, "must be at least 1"),
    (Setting("N", 5, min=1, max=10), 11, "must be at most 10"),
    (Setting("R", 0.5, min=0.0, max=1.0), 1.5, "must be at most 1"),
]


@pytest.mark.parametrize(("setting", "value", "expected"), GOOD)
def test_valid_values_are_normalised(setting: Setting[Any], value: Any, expected: Any) -> None:
    result = setting.validate(value)
    assert result == expected
    assert type(result) is type(expected)
    assert setting.decode(setting.encode(result)) == expected


@pytest.mark.parametrize(("setting", "value", "reason"), BAD)
def test_invalid_values_name_key_and_reason(setting: Setting[Any], value: Any, reason: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        setting.validate(value)
    assert list(caught.value.errors) == [setting.key]
    assert reason in caught.value.errors[setting.key]


@pytest.mark.parametrize(
    ("setting", "raw", "expected"),
    [
        (Setting("B", True), "false", False),
        (Setting("B", True), "False", False),
        (Setting("B", True), "0", False),
        (Setting("B", True), "off", False),
        (Setting("B", False), "yes", True),
        (Setting("B", False), " TRUE ", True),
        (Setting("I", 1), " 42 ", 42),
        (Setting("F", 1.0), "0.5", 0.5),
        (Setting("S", ""), " padded ", " padded "),
        (Setting("D", {}), '{"a": [1]}', {"a": [1]}),
        (Setting("J", None, type="json"), "null", None),
    ],
)
def test_parse_text(setting: Setting[Any], raw: str, expected: Any) -> None:
    assert setting.parse_text(raw) == expected


@pytest.mark.parametrize(
    ("setting", "raw"),
    [
        (Setting("B", True), "maybe"),
        (Setting("I", 1), "4.5"),
        (Setting("I", 1), ""),
        (Setting("F", 1.0), "nan"),
        (Setting("F", 1.0), "ten"),
        (Setting("D", {}), "{broken"),
        (Setting("D", {}), "[1]"),
        (Setting("N", 5, min=1), "0"),
    ],
)
def test_parse_text_rejects(setting: Setting[Any], raw: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        setting.parse_text(raw)
    assert setting.key in caught.value.errors


def test_decode_rejects_corrupt_stored_text() -> None:
    with pytest.raises(InvalidValueError, match="stored value is unreadable: must be valid JSON"):
        Setting("I", 1).decode("gASVBQAAAAAAAAB9lC4=")  # what a pickled value would look like


def test_bool_default_declares_bool_not_int() -> None:
    assert Setting("B", True).kind == "bool"
    assert Setting("I", 0).kind == "int"


def test_json_values_are_copied() -> None:
    original = {"a": [1]}
    setting = Setting("D", original)
    value = setting.validate(original)
    value["a"].append(2)
    assert original == {"a": [1]}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Setting("bad key", 1), "must start with a letter"),
        (lambda: Setting("K" * 201, 1), "over 200"),
        (lambda: Setting("K", 1, type="money"), "unknown setting type"),
        (lambda: Setting("K", 1, type=type("Opaque", (), {})), "unsupported setting type"),
        (lambda: Setting("K", "x", min=1), "min/max apply"),
        (lambda: Setting("K", 1.0, max=float("nan")), "max must be a finite number"),
        (lambda: Setting("K", 1.0, min=float("-inf")), "min must be a finite number"),
        (lambda: setting_from_conf("K", {"default": 1, "min": "0"}), "min must be a finite"),
        (lambda: Setting("K", 1, max=True), "max must be a finite number"),
        (lambda: Setting("K", 50, max=10), "must be at most 10"),
        (lambda: Setting("K", "a", choices=("b",)), "must be one of"),
        (lambda: Setting("K", 1, choices=("b",)), "must be an integer"),
    ],
)
def test_bad_declarations(factory: Any, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        factory()


def test_waffle_confs_format() -> None:
    declared = declare(
        {
            "GREETING": {"default": "hi", "desc": "Greeting"},
            "LIMIT": {"default": 3, "type": "float", "min": 0, "secret": True, "group": "L"},
        },
        [Setting("EXTRA", True)],
    )
    assert list(declared) == ["GREETING", "LIMIT", "EXTRA"]
    assert declared["GREETING"].description == "Greeting"
    assert declared["LIMIT"].kind == "float"
    assert declared["LIMIT"].default == 3.0
    assert declared["LIMIT"].describe()["default"] == SECRET_MASK


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"desc": "no default"}, "needs a default"),
        ({"default": 1, "colour": "red"}, "unknown fields"),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_bad_waffle_confs(conf: Any, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        setting_from_conf("K", conf)


def test_declared_twice() -> None:
    with pytest.raises(DeclarationError, match="declared twice"):
        declare({"K": {"default": 1}}, [Setting("K", 2)])
