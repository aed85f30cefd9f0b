"""Setting kinds: one entry per type with everything that differs by type.

A kind says which values fit and how they are normalised, how a person's text
(CLI argument, form field, query) is read and how a value is written back as
text, the JSON Schema of its values and the admin page's input. Validation,
the admin API and page, the OpenAPI document and the CLI all read this table,
so a new type is one entry in :data:`KINDS`.

Every stored value is bounded the same way, whatever its kind: at most
:data:`MAX_DEPTH` nested lists and objects, :data:`MAX_VALUE_BYTES` of UTF-8
JSON, integers within 64 bits, finite numbers, and text without lone
surrogates (which no database driver can encode).

Pure: no I/O, nothing of quart-waffle but its shared limits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .limits import MAX_BODY_BYTES

MAX_DEPTH = 32
"""Most lists and objects nested in one value."""
MAX_VALUE_BYTES = MAX_BODY_BYTES
"""Largest value, as UTF-8 JSON: what the largest admin request body can carry."""
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1

_SPACE = " \t\r\n"
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def parse_bool(text: str) -> bool | None:
    """True or False for a typed yes/no word (any case), None for anything else."""
    word = text.strip(_SPACE).lower()
    if word in _TRUE_WORDS:
        return True
    return False if word in _FALSE_WORDS else None


def parse_integer(text: str) -> int:
    """An integer typed by a person: ASCII digits with an optional sign and
    surrounding spaces, nothing else (no ``1_0``, no other scripts' digits,
    which ``int`` accepts); raise ``ValueError`` with the reason, which never
    repeats the text (it may be a secret)."""
    stripped = text.strip(_SPACE)
    if _INTEGER.fullmatch(stripped) is None:
        raise ValueError("must be an integer: ASCII digits with an optional sign")
    return int(stripped)


def parse_number(text: str) -> float:
    """A finite number typed by a person: ASCII digits, an optional sign,
    decimal point and exponent, surrounding spaces (no ``nan``, ``inf``,
    ``1_0`` or other scripts' digits); raise ``ValueError`` with the reason."""
    stripped = text.strip(_SPACE)
    if _NUMBER.fullmatch(stripped) is None:
        raise ValueError(
            "must be a number: ASCII digits with an optional sign, decimal point and exponent"
        )
    number = float(stripped)
    if not math.isfinite(number):
        raise ValueError("must be a finite number, got one too large")
    return number


def load_json(text: str) -> Any:
    """A JSON value read from text, within the bounds of every stored value;
    raise ``ValueError`` with the reason (NaN and Infinity are not JSON)."""
    if len(text) > MAX_VALUE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise ValueError(f"must be at most {MAX_VALUE_BYTES} bytes of JSON")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"must be valid JSON ({error.msg})") from None
    except _ConstantError as error:
        raise ValueError(f"must be valid JSON ({error})") from None
    except ValueError:  # an integer of thousands of digits
        raise ValueError(f"must be valid JSON ({integer_problem(MAX_INT + 1)})") from None
    except RecursionError:
        raise ValueError(f"must nest at most {MAX_DEPTH} lists or objects") from None
    reason = json_problem(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON, or None when it can: only
    JSON types (tuples count as lists), string keys, finite numbers, 64-bit
    integers, text without lone surrogates, at most :data:`MAX_DEPTH` deep.
    Iterative, so no value can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            reason = text_problem(item)
        elif isinstance(item, int):
            reason = integer_problem(item)
        elif isinstance(item, float):
            reason = None if math.isfinite(item) else "must not contain NaN or infinity"
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_DEPTH:
                return f"must nest at most {MAX_DEPTH} lists or objects"
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        return f"object keys must be strings, got {type(key).__name__}"
                    reason = text_problem(key)
                    if reason is not None:
                        return reason
                stack.extend((member, depth + 1) for member in item.values())
            else:
                stack.extend((member, depth + 1) for member in item)
            continue
        else:
            return f"must contain only JSON values, got {type(item).__name__}"
        if reason is not None:
            return reason
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a lone surrogate), or None."""
    if _SURROGATE.search(text) is not None:
        return "must not contain lone surrogates (invalid Unicode)"
    return None


def storable_text(text: str) -> str:
    """``text`` for a plain text column: NUL (which PostgreSQL text cannot
    hold) and lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))


def integer_problem(number: int) -> str | None:
    """Why ``number`` cannot be stored (outside 64 bits), or None."""
    if MIN_INT <= number <= MAX_INT:
        return None
    return f"must be between {MIN_INT} and {MAX_INT}"


class _ConstantError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not JSON")


# one decoder for every value: json.loads would build a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _got(value: Any) -> str:
    return type(value).__name__


def _check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_got(value)}")
    reason = text_problem(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def _check_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"must be an integer, got {_got(value)}")
    reason = integer_problem(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def _check_float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"must be a finite number, got {_got(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError("must be a finite number, got one too large") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_got(value)}")
    return value


def _json_checker(
    expected: str, fits: Callable[[Any], bool] = lambda _value: True
) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not fits(value):
            raise ValueError(f"must be {expected}, got {_got(value)}")
        reason = json_problem(value)
        if reason is not None:
            raise ValueError(reason)
        # a deep copy through JSON: tuples become lists, and callers keep no alias
        return json.loads(json.dumps(value))

    return check


def _parse_bool_text(text: str) -> bool:
    value = parse_bool(text)
    if value is None:
        raise ValueError("must be true or false (or yes/no, on/off, 1/0)")
    return value


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _format_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Kind:
    """Everything that differs between setting types.

    Arguments:
        name: The type's name in declarations, the API and the CLI.
        python_type: The Python type of a default that declares this kind,
            or None if only its name does.
        check: Return a value normalised to the kind, or raise ``ValueError``
            with the reason.
        parse_text: Read a person's text, or raise ``ValueError`` with the reason.
        format_text: A value as a person would type it (``parse_text`` reads it back).
        json_schema: The JSON Schema of the kind's values.
        widget: The admin page's input: ``text``, ``number``, ``checkbox`` or ``textarea``.
        ordered: Whether ``min`` and ``max`` apply.
    """

    name: str
    python_type: type | None
    check: Callable[[Any], Any]
    parse_text: Callable[[str], Any]
    format_text: Callable[[Any], str]
    json_schema: Mapping[str, Any]
    widget: str
    ordered: bool = False


def _json_kind(
    name: str,
    python_type: type | None,
    expected: str,
    schema: Mapping[str, Any],
    fits: Callable[[Any], bool] = lambda _value: True,
) -> Kind:
    return Kind(
        name,
        python_type,
        _json_checker(expected, fits),
        load_json,
        _format_json,
        schema,
        "textarea",
    )


KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            Kind("str", str, _check_str, str, str, {"type": "string"}, "text"),
            Kind("int", int, _check_int, parse_integer, repr, {"type": "integer"}, "number", True),
            Kind(
                "float", float, _check_float, parse_number, repr, {"type": "number"}, "number", True
            ),
            Kind(
                "bool",
                bool,
                _check_bool,
                _parse_bool_text,
                _format_bool,
                {"type": "boolean"},
                "checkbox",
            ),
            _json_kind("list", list, "a JSON list", {"type": "array"}, _is_list),
            _json_kind("dict", dict, "a JSON object", {"type": "object"}, _is_dict),
            _json_kind("json", None, "a JSON value", {}),
        )
    }
)
"""Every kind by name; a new type is one entry here."""


def kind_for(type_: type | str | None, default: Any) -> Kind:
    """The kind a declaration names: by ``type_`` (a Python type or a kind's
    name), else by the exact type of ``default``, else ``json``; raise
    ``ValueError`` for a type no kind has."""
    if type_ is None:
        for kind in KINDS.values():
            # exact types: True must not declare an int setting
            if kind.python_type is not None and type(default) is kind.python_type:
                return kind
        return KINDS["json"]
    if isinstance(type_, str):
        if type_ in KINDS:
            return KINDS[type_]
        raise ValueError(f"unknown setting type {type_!r}; use one of {', '.join(KINDS)}")
    for kind in KINDS.values():
        if kind.python_type is type_:
            return kind
    raise ValueError(f"unsupported setting type {type_!r}; use one of {', '.join(KINDS)}")
