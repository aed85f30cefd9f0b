"""Setting declarations: types, constraints, the JSON codec and validation.

Pure: no I/O, nothing of quart-waffle but its errors, so the store, the admin
and the CLI all validate the same way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

from .errors import DeclarationError, InvalidValueError

T = TypeVar("T")

Kind = Literal["str", "int", "float", "bool", "list", "dict", "json"]
KINDS: tuple[Kind, ...] = ("str", "int", "float", "bool", "list", "dict", "json")
MAX_KEY_LENGTH = 200
SECRET_MASK = "********"

_KIND_OF_TYPE: dict[type, Kind] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    list: "list",
    dict: "dict",
}
_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def parse_bool(text: str) -> bool | None:
    """True or False for a typed yes/no word (any case), None for anything else."""
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    return False if word in _FALSE_WORDS else None


_CONF_FIELDS = frozenset(
    {"default", "desc", "description", "type", "choices", "min", "max", "secret", "group"}
)


def _kind_of(type_: type | str | None, default: Any) -> Kind:
    if type_ is None:
        for python_type, kind in _KIND_OF_TYPE.items():
            # bool is checked before int: True must not declare an int setting
            if type(default) is python_type:
                return kind
        return "json"
    if isinstance(type_, str):
        if type_ not in KINDS:
            raise DeclarationError(f"unknown setting type {type_!r}; use one of {', '.join(KINDS)}")
        return type_
    if type_ in _KIND_OF_TYPE:
        return _KIND_OF_TYPE[type_]
    raise DeclarationError(f"unsupported setting type {type_!r}; use one of {', '.join(KINDS)}")


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_FITS: dict[Kind, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda value: isinstance(value, str), "a string"),
    "int": (lambda value: isinstance(value, int) and not isinstance(value, bool), "an integer"),
    "float": (_is_number, "a finite number"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "list": (lambda value: isinstance(value, list) and _is_json(value), "a JSON list"),
    "dict": (lambda value: isinstance(value, dict) and _is_json(value), "a JSON object"),
    "json": (_is_json, "a JSON value"),
}


def _type_error(kind: Kind, value: Any) -> str | None:
    """The reason ``value`` is not of ``kind``, or None when it is."""
    fits, expected = _FITS[kind]
    if fits(value):
        return None
    return f"must be {expected}, got {type(value).__name__}"


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One declared setting.

    Arguments:
        key: The name, also the ``app.config`` key.
        default: The value until someone changes it; its type is the
            setting's type unless ``type`` is given.
        type: ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict`` (or
            their names) or ``"json"`` for any JSON value.
        description: Shown by the admin and the CLI.
        choices: If given, the only values allowed.
        min: Smallest allowed number (int and float settings).
        max: Largest allowed number (int and float settings).
        secret: Never echoed by the admin, the history or the logs.
        group: Heading the admin page lists the setting under.

    Example::

        MAX_ITEMS = Setting("MAX_ITEMS", 20, min=1, max=500, description="Page size")
    """

    key: str
    default: T
    type: type | str | None = None
    description: str = ""
    choices: tuple[T, ...] | None = None
    min: float | None = None
    max: float | None = None
    secret: bool = False
    group: str = ""
    kind: Kind = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_PATTERN.fullmatch(self.key):
            raise DeclarationError(
                f"setting key {self.key!r} must start with a letter or _ and contain only"
                " letters, digits, _ . -"
            )
        if len(self.key) > MAX_KEY_LENGTH:
            raise DeclarationError(f"setting key {self.key[:20]}... is over {MAX_KEY_LENGTH} chars")
        object.__setattr__(self, "kind", _kind_of(self.type, self.default))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if (self.min is not None or self.max is not None) and self.kind not in ("int", "float"):
            raise DeclarationError(f"{self.key}: min/max apply to int and float settings only")
        try:
            for choice in self.choices or ():
                self._check_type(choice)
            object.__setattr__(self, "default", self.validate(self.default))
        except InvalidValueError as error:
            raise DeclarationError(f"invalid declaration: {error}") from None

    def _check_type(self, value: Any) -> Any:
        reason = _type_error(self.kind, value)
        if reason is not None:
            raise InvalidValueError({self.key: reason})
        if self.kind == "float":
            return float(value)
        if self.kind in ("list", "dict", "json"):
            # a deep copy through JSON: tuples become lists, and callers keep no alias
            return json.loads(json.dumps(value))
        return value

    def validate(self, value: Any) -> T:
        """Return ``value`` normalised to this setting's type, or raise
        :class:`InvalidValueError` naming the key and the reason."""
        value = self._check_type(value)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(json.dumps(choice) for choice in self.choices)
            raise InvalidValueError({self.key: f"must be one of {allowed}"})
        if self.min is not None and value < self.min:
            raise InvalidValueError({self.key: f"must be at least {self.min:g}"})
        if self.max is not None and value > self.max:
            raise InvalidValueError({self.key: f"must be at most {self.max:g}"})
        return cast(T, value)

    def encode(self, value: T) -> str:
        """The stored form: compact JSON."""
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)

    def decode(self, text: str) -> T:
        """Read a stored value back, validating it against the declaration."""
        try:
            value = json.loads(text)
        except ValueError:
            raise InvalidValueError({self.key: "stored value is not valid JSON"}) from None
        return self.validate(value)

    def parse_text(self, raw: str) -> T:
        """Parse a value typed by a person (CLI argument, HTML form field).

        Strings are taken as they are; booleans accept true/false, yes/no,
        on/off, 1/0; numbers their usual spelling; list, dict and json settings
        take JSON text.
        """
        text = raw.strip()
        value: Any
        if self.kind == "str":
            value = raw
        elif self.kind == "bool":
            value = parse_bool(raw)
            if value is None:
                raise InvalidValueError({self.key: f"must be true or false, got {raw!r}"})
        elif self.kind in ("int", "float"):
            try:
                value = int(text) if self.kind == "int" else float(text)
            except ValueError:
                raise InvalidValueError(
                    {self.key: f"must be {'an integer' if self.kind == 'int' else 'a number'}"}
                ) from None
        else:
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidValueError({self.key: "must be valid JSON"}) from None
        return self.validate(value)

    def display(self, value: Any) -> Any:
        """``value`` as it may be shown to people: masked when secret."""
        return SECRET_MASK if self.secret else value

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON-ready data (the default masked when secret)."""
        return {
            "key": self.key,
            "type": self.kind,
            "description": self.description,
            "default": self.display(self.default),
            "choices": None if self.choices is None else list(self.choices),
            "min": self.min,
            "max": self.max,
            "secret": self.secret,
            "group": self.group,
        }


def setting_from_conf(key: str, conf: Mapping[str, Any]) -> Setting[Any]:
    """A :class:`Setting` from a Flask-WaffleConf style ``WAFFLE_CONFS`` entry."""
    if not isinstance(conf, Mapping):
        raise DeclarationError(
            f"WAFFLE_CONFS[{key!r}] must be a mapping, got {type(conf).__name__}"
        )
    unknown = set(conf) - _CONF_FIELDS
    if unknown:
        raise DeclarationError(f"WAFFLE_CONFS[{key!r}]: unknown fields {sorted(unknown)}")
    if "default" not in conf:
        raise DeclarationError(f"WAFFLE_CONFS[{key!r}] needs a default")
    choices = conf.get("choices")
    return Setting(
        key,
        conf["default"],
        type=conf.get("type"),
        description=str(conf.get("description", conf.get("desc", ""))),
        choices=None if choices is None else tuple(choices),
        min=conf.get("min"),
        max=conf.get("max"),
        secret=bool(conf.get("secret", False)),
        group=str(conf.get("group", "")),
    )


def declare(
    confs: Mapping[str, Mapping[str, Any]] | None, settings: Iterable[Setting[Any]] = ()
) -> dict[str, Setting[Any]]:
    """Merge ``WAFFLE_CONFS`` entries and :class:`Setting` objects into one
    registry keyed by name; a key declared twice is an error."""
    declared: dict[str, Setting[Any]] = {}
    items = [setting_from_conf(key, conf) for key, conf in (confs or {}).items()]
    for setting in [*items, *settings]:
        if setting.key in declared:
            raise DeclarationError(f"setting {setting.key!r} is declared twice")
        declared[setting.key] = setting
    return declared
