"""Setting kinds: one entry per type with everything that differs by type.

A kind says which values fit and how they are normalised, how a person's text
(CLI argument, form field, query) is read and how a value is written back as
text, the JSON Schema of its values, how ``min`` and ``max`` bound them, and
the admin page's input. Validation, the admin API and page, the OpenAPI
document and the CLI all read this table, so a new type is one entry in
:data:`KINDS`.

Every stored value is bounded the same way, whatever its kind: at most
:data:`MAX_DEPTH` nested lists and objects, :data:`MAX_VALUE_BYTES` of UTF-8
JSON, integers within 64 bits, finite numbers, and text without lone
surrogates (which no database driver can encode).

Pure: no I/O, nothing of quart-waffle but its shared limits.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

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
    number = _as_float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _as_float(number: int | float) -> float:
    """``number`` as a float, refusing an int beyond any float."""
    try:
        return float(number)
    except OverflowError:
        raise ValueError("must be a finite number, got one too large") from None


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


def _same(value: Any) -> Any:
    return value


Bound = float | dt.date | dt.timedelta | str
"""A declared ``min`` or ``max``: a number, a date, an aware datetime, a
timedelta, or its ISO 8601 text (as a configuration file writes it)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How ``min`` and ``max`` apply to the values of a kind.

    Arguments:
        check: A declared bound normalised so that values compare with it,
            or raise ``ValueError`` with the reason.
        text: A normalised bound as a reason names it.
        keywords: The JSON Schema keywords of the lower and upper bound.
        below: The reason a value below ``min`` is refused (``{}`` is the bound).
        above: The reason a value above ``max`` is refused.
    """

    check: Callable[[Any], Any]
    text: Callable[[Any], str]
    keywords: tuple[str, str] = ("minimum", "maximum")
    below: str = "must be at least {}"
    above: str = "must be at most {}"


def _number_bound(bound: Any) -> float:
    if (
        isinstance(bound, bool)
        or not isinstance(bound, int | float)
        or not math.isfinite(_as_float(bound))
    ):
        raise ValueError(f"must be a finite number, got {bound!r}")
    return bound


_NUMBER_BOUNDS = Bounds(_number_bound, lambda bound: f"{bound:g}")


# the keywords that bound a string in the order of its format (ajv-formats
# reads them for a date and a date-time; here a duration too)
_FORMAT_BOUNDS = ("formatMinimum", "formatMaximum")


@dataclass(frozen=True, slots=True)
class Kind:
    """Everything that differs between setting types.

    Arguments:
        name: The type's name in declarations, the API and the CLI.
        python_type: The Python type of a default that declares this kind,
            or None if only its name does.
        check: Return a value normalised to the kind, or raise ``ValueError``
            with the reason. It takes the Python value and its JSON form.
        parse_text: Read a person's text, or raise ``ValueError`` with the reason.
        format_text: A value as a person would type it (``parse_text`` reads it back).
        json_schema: The JSON Schema of the kind's values.
        widget: The admin page's input: ``text``, ``number``, ``checkbox``,
            ``textarea``, ``date``, ``datetime``, ``url`` or ``select``.
        bounds: How ``min`` and ``max`` apply, or None when they do not.
        to_json: A checked value in its JSON form (how it is stored, sent and
            shown); the identity for the kinds whose values are JSON already.
        sized: What ``min_length`` and ``max_length`` count (``characters``,
            ``items``), or empty when they do not apply.
        secret_reason: Said instead of ``check``'s reason for a secret
            setting, when that reason may repeat the value.
    """

    name: str
    python_type: type | None
    check: Callable[[Any], Any]
    parse_text: Callable[[str], Any]
    format_text: Callable[[Any], str]
    json_schema: Mapping[str, Any]
    widget: str
    bounds: Bounds | None = None
    to_json: Callable[[Any], Any] = _same
    sized: str = ""
    secret_reason: str | None = None

    def bounds_schema(self, low: Any, high: Any) -> dict[str, Any]:
        """The JSON Schema keywords of the declared bounds ``low`` and ``high``
        (None where there is none), each in its JSON form."""
        if self.bounds is None:
            return {}
        pairs = zip(self.bounds.keywords, (low, high), strict=True)
        return {keyword: self.to_json(bound) for keyword, bound in pairs if bound is not None}


def _json_kind(
    name: str,
    python_type: type | None,
    expected: str,
    schema: Mapping[str, Any],
    fits: Callable[[Any], bool] = lambda _value: True,
    sized: str = "",
) -> Kind:
    return Kind(
        name,
        python_type,
        _json_checker(expected, fits),
        load_json,
        _format_json,
        schema,
        "textarea",
        sized=sized,
    )


# -- datetime, date, duration, decimal, url ---------------------------------

MAX_URL_LENGTH = 2048
"""Longest URL, unless the setting's ``max_length`` says otherwise."""
MAX_DECIMAL_DIGITS = 100
MAX_DECIMAL_EXPONENT = 1000
_MAX_TEXT = 64  # longest date, datetime or duration text worth reading
_DURATION = re.compile(
    r"P(?:([0-9]{1,9})D)?(?:T(?:([0-9]{1,9})H)?(?:([0-9]{1,9})M)?(?:([0-9]{1,12}(?:\.[0-9]{1,6})?)S)?)?"
)
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def _iso_text(value: Any, what: str, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what} ({example}), got {_got(value)}")
    text = value.strip(_SPACE)
    if len(text) > _MAX_TEXT:
        raise ValueError(f"must be {what} ({example})")
    return text


# ISO 8601 extended format as RFC 3339 writes it, in ASCII digits: what the
# OpenAPI formats "date" and "date-time" say (fromisoformat alone takes more,
# such as 20260601 or 2026-W23-1); the offset is left to say a naive time is ambiguous
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def parse_datetime(text: str) -> dt.datetime:
    """A date and time as ``YYYY-MM-DDTHH:MM[:SS[.ffffff]]`` with ``Z`` or
    ``±HH:MM`` (or none: naive); raise ``ValueError`` for any other form."""
    if _DATETIME_TEXT.fullmatch(text) is None:
        raise ValueError("not an ISO 8601 date and time in extended format")
    return dt.datetime.fromisoformat(text)


def _check_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = _iso_text(value, "an ISO 8601 date and time with a UTC offset", _DATETIME_EXAMPLE)
        try:
            moment = parse_datetime(text)
        except ValueError:
            raise ValueError(
                f"must be an ISO 8601 date and time with a UTC offset ({_DATETIME_EXAMPLE})"
            ) from None
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(
            "must be timezone-aware: a naive date and time is ambiguous; give a UTC offset"
            f" ({_DATETIME_EXAMPLE})"
        )
    # a fixed offset: what the ISO text reads back as, on every worker
    return moment.replace(tzinfo=dt.timezone(offset))


_DATETIME_EXAMPLE = "2026-11-25T18:00:00+00:00"


def _datetime_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _check_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError("must be a date without a time (2026-11-25), got datetime")
    if isinstance(value, dt.date):
        return value
    text = _iso_text(value, "an ISO 8601 date", "2026-11-25")
    if _DATE_TEXT.fullmatch(text) is not None:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:  # no such day
            pass
    raise ValueError("must be an ISO 8601 date (2026-11-25)")


def _format_iso(value: dt.date) -> str:
    return value.isoformat()


def _calendar_bounds(check: Callable[[Any], Any]) -> Bounds:
    """Bounds of dates or moments: the earliest and the latest allowed."""
    return Bounds(
        check, _format_iso, _FORMAT_BOUNDS, "must not be before {}", "must not be after {}"
    )


def _date_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


_DURATION_EXPECTED = "an ISO 8601 duration (PT15M, P1DT2H, PT0.5S) or a number of seconds"


def _check_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(_as_float(value)):
            raise ValueError(f"must be {_DURATION_EXPECTED}, got a non-finite number")
        try:
            duration = dt.timedelta(seconds=value)
        except OverflowError:
            raise ValueError("must be at most 999999999 days") from None
    else:
        text = _iso_text(value, _DURATION_EXPECTED, "PT15M")
        match = _DURATION.fullmatch(text)
        if match is None or text in ("P", "PT") or text.endswith("T"):
            raise ValueError(f"must be {_DURATION_EXPECTED}")
        days, hours, minutes, seconds = (part or "0" for part in match.groups())
        try:
            duration = dt.timedelta(
                days=int(days), hours=int(hours), minutes=int(minutes), seconds=float(seconds)
            )
        except OverflowError:
            raise ValueError("must be at most 999999999 days") from None
    if duration < dt.timedelta(0):
        raise ValueError("must not be negative")
    return duration


def format_duration(value: dt.timedelta) -> str:
    """``value`` in ISO 8601: ``P1DT2H30M``, ``PT0.5S``, ``PT0S``."""
    seconds = value.seconds
    text = f"P{value.days}D" if value.days else "P"
    hours, minutes, whole = seconds // 3600, seconds // 60 % 60, seconds % 60
    clock = f"{hours}H" if hours else ""
    clock += f"{minutes}M" if minutes else ""
    if whole or value.microseconds:
        clock += f"{whole}.{value.microseconds:06d}".rstrip("0").rstrip(".") + "S"
    if clock:
        text += "T" + clock
    return "PT0S" if text == "P" else text


def _parse_duration_text(text: str) -> dt.timedelta:
    stripped = text.strip(_SPACE)
    if _NUMBER.fullmatch(stripped) is not None:
        return _check_duration(parse_number(stripped))
    return _check_duration(stripped)


def _duration_json(value: Any) -> Any:
    return format_duration(value) if isinstance(value, dt.timedelta) else value


def _check_decimal(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        raise ValueError(
            f'must be a decimal number as a string ("12.50") or an integer, got {_got(value)}:'
            " a float is not exact"
        )
    if isinstance(value, int):
        reason = integer_problem(value)
        if reason is not None:
            raise ValueError(reason)
        number = Decimal(value)
    elif isinstance(value, str):
        stripped = value.strip(_SPACE)
        if len(stripped) > MAX_DECIMAL_DIGITS + 10 or _NUMBER.fullmatch(stripped) is None:
            raise ValueError(
                "must be a decimal number: ASCII digits with an optional sign, decimal point"
                " and exponent"
            )
        number = Decimal(stripped)
    elif isinstance(value, Decimal):
        number = value
    else:
        raise ValueError(f"must be a decimal number, got {_got(value)}")
    if not number.is_finite():
        raise ValueError("must be a finite decimal number")
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    if len(digits) > MAX_DECIMAL_DIGITS or abs(exponent) > MAX_DECIMAL_EXPONENT:
        raise ValueError(
            f"must have at most {MAX_DECIMAL_DIGITS} digits and an exponent within"
            f" ±{MAX_DECIMAL_EXPONENT}"
        )
    return number


def _decimal_json(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _check_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL, got {_got(value)}")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if _URL_FORBIDDEN.search(value) is not None or text_problem(value) is not None:
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (reading it checks the port)
    except ValueError as error:
        raise ValueError(f"must be a valid URL ({error})") from None
    if not parts.scheme or not parts.netloc:
        raise ValueError("must be an absolute URL with a scheme and a host (https://example.com/)")
    return value


def _parse_url_text(text: str) -> str:
    return text.strip(_SPACE)


KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            Kind("str", str, _check_str, str, str, {"type": "string"}, "text", sized="characters"),
            Kind(
                "int",
                int,
                _check_int,
                parse_integer,
                repr,
                {"type": "integer"},
                "number",
                _NUMBER_BOUNDS,
            ),
            Kind(
                "float",
                float,
                _check_float,
                parse_number,
                repr,
                {"type": "number"},
                "number",
                _NUMBER_BOUNDS,
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
            _json_kind("list", list, "a JSON list", {"type": "array"}, _is_list, "items"),
            _json_kind("dict", dict, "a JSON object", {"type": "object"}, _is_dict),
            _json_kind("json", None, "a JSON value", {}),
            Kind(
                "datetime",
                dt.datetime,
                _check_datetime,
                _check_datetime,
                _format_iso,
                {"type": "string", "format": "date-time"},
                "datetime",
                _calendar_bounds(_check_datetime),
                to_json=_datetime_json,
            ),
            Kind(
                "date",
                dt.date,
                _check_date,
                _check_date,
                _format_iso,
                {"type": "string", "format": "date"},
                "date",
                _calendar_bounds(_check_date),
                to_json=_date_json,
            ),
            Kind(
                "duration",
                dt.timedelta,
                _check_duration,
                _parse_duration_text,
                format_duration,
                {"type": "string", "format": "duration"},
                "text",
                Bounds(_check_duration, format_duration, _FORMAT_BOUNDS),
                to_json=_duration_json,
            ),
            Kind(
                "decimal",
                Decimal,
                _check_decimal,
                _check_decimal,
                str,
                {"type": "string", "format": "decimal", "pattern": f"^{_NUMBER.pattern}$"},
                "number",
                _NUMBER_BOUNDS,
                to_json=_decimal_json,
            ),
            Kind(
                "url",
                None,
                _check_url,
                _parse_url_text,
                str,
                {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
                "url",
                sized="characters",
            ),
        )
    }
)
"""Every kind by name; a new type is one entry here. Kinds made from
another (a list of a kind, an :class:`enum.Enum`, a pydantic type) are built
by :func:`kind_for` from these."""


def list_of(item: Kind) -> Kind:
    """The kind of lists whose every item is of kind ``item``."""

    def check(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list, got {_got(value)}")
        checked = []
        for index, member in enumerate(value):
            try:
                checked.append(item.check(member))
            except ValueError as error:
                raise ValueError(f"item {index}: {error}") from None
        return checked

    def to_json(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [item.to_json(member) for member in value]

    return Kind(
        f"list[{item.name}]",
        None,
        check,
        load_json,
        lambda value: _format_json(to_json(value)),
        {"type": "array", "items": dict(item.json_schema)},
        "textarea",
        to_json=to_json,
        sized="items",
        secret_reason=item.secret_reason,
    )


def enum_kind(enum_type: type[enum.Enum]) -> Kind:
    """The kind of one :class:`enum.Enum`: its members, stored as their values
    (each a string or an integer); typed text may be a value or a member's name."""
    members = list(enum_type)
    if not members:
        raise ValueError(f"enum {enum_type.__name__} has no members")
    for member in members:
        if isinstance(member.value, bool) or not isinstance(member.value, str | int):
            raise ValueError(
                f"enum {enum_type.__name__}: every value must be a string or an integer,"
                f" {member.name} is {_got(member.value)}"
            )
    values = ", ".join(json.dumps(member.value) for member in members)

    def check(value: Any) -> enum.Enum:
        if isinstance(value, enum_type):
            return value
        if not isinstance(value, bool):
            for member in members:
                if type(member.value) is type(value) and member.value == value:
                    return member
        raise ValueError(f"must be one of {values}")

    def parse_text(text: str) -> enum.Enum:
        stripped = text.strip(_SPACE)
        for member in members:
            if stripped in (str(member.value), member.name):
                return member
        raise ValueError(f"must be one of {values}")

    def to_json(value: Any) -> Any:
        return value.value if isinstance(value, enum_type) else value

    kinds = {type(member.value) for member in members}
    schema: dict[str, Any] = {"enum": [member.value for member in members]}
    if len(kinds) == 1:
        schema["type"] = "string" if kinds == {str} else "integer"
    return Kind(
        "enum",
        enum_type,
        check,
        parse_text,
        lambda value: str(value.value),
        schema,
        "select",
        to_json=to_json,
        secret_reason="must be one of the allowed values",
    )


def kind_for(type_: Any, default: Any, items: Any = None) -> Kind:
    """The kind a declaration names: by ``type_`` (a Python type, a kind's
    name, an :class:`enum.Enum` class or, with pydantic installed, any type
    pydantic validates), else by the type of ``default``, else ``json``;
    ``items`` makes it a list of that kind. Raise ``ValueError`` for a type
    no kind has."""
    if items is not None:
        if type_ not in (None, list, "list"):
            raise ValueError(f"items apply to list settings only, not {type_!r}")
        return list_of(kind_for(items, None))
    if type_ is None:
        if isinstance(default, enum.Enum):
            return enum_kind(type(default))
        for kind in KINDS.values():
            # exact types: True must not declare an int setting
            if kind.python_type is not None and type(default) is kind.python_type:
                return kind
        from .kinds_extra import pydantic_kind_of_value

        return pydantic_kind_of_value(default) or KINDS["json"]
    if isinstance(type_, str):
        if type_ in KINDS:
            return KINDS[type_]
        raise ValueError(f"unknown setting type {type_!r}; use one of {', '.join(KINDS)}")
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return enum_kind(type_)
    for kind in KINDS.values():
        if kind.python_type is type_:
            return kind
    from .kinds_extra import pydantic_kind

    adapted = pydantic_kind(type_)
    if adapted is None:
        raise ValueError(
            f"unsupported setting type {type_!r}; use one of {', '.join(KINDS)}, an Enum class"
            " or, with the pydantic extra installed, a pydantic model or type"
        )
    return adapted
