"""Setting declarations: types, constraints, the JSON codec and validation.

Pure: no I/O, nothing of quart-waffle but its errors, so the store, the admin
and the CLI all validate the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

from .errors import DeclarationError, InvalidValueError
from .kinds import KINDS, MAX_VALUE_BYTES, Bound, Kind, kind_for, load_json, parse_bool
from .kinds_extra import SchemaCheck, schema_check

__all__ = [
    "KINDS",
    "MAX_KEY_LENGTH",
    "SECRET_MASK",
    "UNREADABLE_MARK",
    "Setting",
    "declare",
    "display_value",
    "parse_bool",
    "setting_from_conf",
]

T = TypeVar("T")

MAX_KEY_LENGTH = 200
SECRET_MASK = "********"
"""Shown, and recorded in history, instead of a secret value."""
UNREADABLE_MARK = "<unreadable>"
"""Shown in history instead of a stored value that cannot be read back."""

_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_CONF_FIELDS = frozenset(
    {
        "default",
        "desc",
        "description",
        "type",
        "choices",
        "min",
        "max",
        "secret",
        "group",
        "restart",
        "min_length",
        "max_length",
        "items",
        "schemes",
        "schema",
        "validator",
    }
)
DEFAULT_SCHEMES = ("http", "https")
"""The schemes a ``url`` setting allows unless its ``schemes`` says otherwise."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One declared setting.

    Arguments:
        key: The name, also the ``app.config`` key.
        default: The value until someone changes it; its type is the
            setting's type unless ``type`` is given.
        type: ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
            ``datetime.datetime``, ``datetime.date``, ``datetime.timedelta``,
            ``decimal.Decimal`` (or their names: ``"duration"``, ``"decimal"``),
            ``"url"``, ``"json"`` for any JSON value, an :class:`enum.Enum`
            class, or, with pydantic installed, a pydantic model or type.
        description: Shown by the admin and the CLI.
        choices: If given, the only values allowed.
        min: Smallest allowed value of an int, float, decimal, datetime
            (timezone-aware), date or duration setting: a value of its type
            or its ISO 8601 text.
        max: Largest allowed value, as ``min``.
        secret: Never echoed by the admin, the history or the logs.
        group: Heading the admin page lists the setting under.
        restart: The app reads it only at start-up (a log level, a pool size): a
            change takes effect after a restart. Under ``quart-waffle serve``
            the workers are then rolled (one rolling reload per change);
            elsewhere the admin says the change awaits a restart.
        min_length: Fewest characters (str, url) or items (list).
        max_length: Most characters (str, url) or items (list).
        items: The type of every item of a list setting (as ``type``).
        schemes: The URL schemes a url setting allows (default http, https).
        schema: A JSON Schema the value's JSON form must match (needs the
            ``jsonschema`` extra).
        validator: Called with each value once its type is checked; raises
            ``ValueError`` whose message is the reason the value is refused.

    Example::

        MAX_ITEMS = Setting("MAX_ITEMS", 20, min=1, max=500, description="Page size")
    """

    key: str
    default: T
    type: type | str | None = None
    description: str = ""
    choices: tuple[T, ...] | None = None
    min: Bound | None = None
    max: Bound | None = None
    secret: bool = False
    group: str = ""
    restart: bool = False
    min_length: int | None = None
    max_length: int | None = None
    items: Any = None
    schemes: tuple[str, ...] | None = None
    schema: Mapping[str, Any] | None = field(default=None, hash=False)
    validator: Callable[[Any], object] | None = None
    kind: str = field(init=False)
    _resolved: Kind = field(init=False, repr=False, compare=False)
    _schema_check: SchemaCheck | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_PATTERN.fullmatch(self.key):
            raise DeclarationError(
                f"setting key {self.key!r} must start with a letter or _ and contain only"
                " letters, digits, _ . -"
            )
        if len(self.key) > MAX_KEY_LENGTH:
            raise DeclarationError(f"setting key {self.key[:20]}... is over {MAX_KEY_LENGTH} chars")
        try:
            kind = kind_for(self.type, self.default, self.items)
            check = None if self.schema is None else schema_check(self.schema)
        except ValueError as error:
            raise DeclarationError(f"{self.key}: {error}") from None
        object.__setattr__(self, "kind", kind.name)
        object.__setattr__(self, "_resolved", kind)
        object.__setattr__(self, "_schema_check", check)
        if self.choices is None and kind.widget == "select":  # an Enum: its members
            object.__setattr__(self, "choices", tuple(cast(Iterable[Any], kind.python_type)))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        self._check_options(kind)
        self._check_bounds(kind)
        try:
            if self.choices is not None:
                choices = tuple(self._check_type(choice) for choice in self.choices)
                object.__setattr__(self, "choices", choices)
            object.__setattr__(self, "default", self.validate(self.default))
        except InvalidValueError as error:
            raise DeclarationError(f"invalid declaration: {error}") from None

    def _check_bounds(self, kind: Kind) -> None:
        """Normalise ``min`` and ``max`` as the kind says, or refuse them."""
        if self.min is None and self.max is None:
            return
        if kind.bounds is None:
            raise DeclarationError(
                f"{self.key}: min/max apply to int, float, decimal, datetime, date and"
                " duration settings only"
            )
        for name in ("min", "max"):
            bound = getattr(self, name)
            if bound is None:
                continue
            try:
                object.__setattr__(self, name, kind.bounds.check(bound))
            except ValueError as error:
                raise DeclarationError(f"{self.key}: {name} {error}") from None
        low: Any = self.min
        if low is not None and self.max is not None and low > self.max:
            raise DeclarationError(
                f"{self.key}: min {self.bound_text(low)} is above max {self.bound_text(self.max)}"
            )

    def _check_options(self, kind: Kind) -> None:
        for name in ("min_length", "max_length"):
            bound = getattr(self, name)
            if bound is None:
                continue
            if not kind.sized:
                raise DeclarationError(f"{self.key}: {name} applies to str, url and list settings")
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
                raise DeclarationError(f"{self.key}: {name} must be a whole number >= 0")
        if self.schemes is not None:
            if kind.name != "url":
                raise DeclarationError(f"{self.key}: schemes apply to url settings only")
            object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))
        if self.validator is not None and not callable(self.validator):
            raise DeclarationError(f"{self.key}: validator must be callable")

    @property
    def _kind(self) -> Kind:
        return self._resolved

    def _refuse(self, reason: str) -> InvalidValueError:
        return InvalidValueError({self.key: reason})

    def _check_type(self, value: Any) -> Any:
        try:
            return self._kind.check(value)
        except ValueError as error:
            raise self._refuse(self._secret_reason(str(error))) from None

    def _secret_reason(self, reason: str) -> str:
        """``reason``, or the kind's words that never repeat a value for a secret."""
        generic = self._kind.secret_reason
        return generic if self.secret and generic else reason

    def _check_extras(self, value: Any) -> None:
        """Length, URL scheme, JSON Schema and the validator function."""
        sized = self._kind.sized
        if self.min_length is not None and len(value) < self.min_length:
            raise self._refuse(f"must be at least {self.min_length} {sized} long")
        if self.max_length is not None and len(value) > self.max_length:
            raise self._refuse(f"must be at most {self.max_length} {sized} long")
        if self.kind == "url":
            allowed = self.schemes or DEFAULT_SCHEMES
            if urlsplit(value).scheme.lower() not in allowed:
                raise self._refuse("must be a URL with the scheme " + " or ".join(allowed))
        if self._schema_check is not None:
            reason = self._schema_check(self.to_json(value))
            if reason is not None:
                raise self._refuse("does not match its JSON Schema" if self.secret else reason)
        if self.validator is not None:
            try:
                self.validator(value)
            except ValueError as error:
                raise self._refuse(str(error) or "refused by its validator") from None

    def to_json(self, value: Any) -> Any:
        """``value`` in its JSON form, as it is stored, sent and shown: a
        datetime as ISO 8601 text, a Decimal as a string, an Enum member as
        its value; JSON values are returned as they are."""
        try:
            return self._kind.to_json(self._kind.check(value))
        except ValueError:  # a recorded value of an older declaration: JSON already
            return value

    def validate(self, value: Any) -> T:
        """Return ``value`` normalised to this setting's type, or raise
        :class:`InvalidValueError` naming the key and the reason.

        Besides the type, choices and range, every value is bounded: at most
        32 nested lists or objects and 64 KiB of JSON, integers within 64 bits,
        finite numbers, text without lone surrogates."""
        value = self._check_type(value)
        if self.choices is not None and self._canonical(value) not in map(
            self._canonical, self.choices
        ):
            raise InvalidValueError({self.key: self._choices_reason()})
        reason = self._range_problem(value)
        if reason is not None:
            raise self._refuse(reason)
        self._check_extras(value)
        if self.kind != "bool" and len(self.encode(value).encode()) > MAX_VALUE_BYTES:
            raise InvalidValueError({self.key: f"must be at most {MAX_VALUE_BYTES} bytes of JSON"})
        return cast(T, value)

    def _range_problem(self, value: Any) -> str | None:
        """Why ``value`` is outside ``min`` … ``max``, or None."""
        bounds = self._kind.bounds
        if bounds is None:
            return None
        if self.min is not None and value < self.min:
            reason = bounds.below.format(self.bound_text(self.min))
        elif self.max is not None and value > self.max:
            reason = bounds.above.format(self.bound_text(self.max))
        else:
            return None
        # a secret's bounds would narrow it down as its choices would
        return "must be within the allowed range" if self.secret else reason

    def bound_text(self, bound: Any) -> str:
        """A declared ``min`` or ``max`` as reasons and the page show it:
        ``1``, ``0.5``, ``2026-01-01``, ``2026-01-01T00:00:00+00:00``, ``PT5M``."""
        bounds = self._kind.bounds
        return str(bound) if bounds is None else bounds.text(bound)

    def _choices_reason(self) -> str:
        if self.secret:  # a secret's choices would tell much of it
            return "must be one of the allowed values"
        assert self.choices is not None
        return "must be one of " + ", ".join(
            json.dumps(self.to_json(choice)) for choice in self.choices
        )

    def _canonical(self, value: Any) -> str:
        return _canonical(self._kind.to_json(value))

    def encode(self, value: T) -> str:
        """The stored form: compact JSON of :meth:`to_json`."""
        return json.dumps(
            self._kind.to_json(value), allow_nan=False, separators=(",", ":"), ensure_ascii=False
        )

    def decode(self, text: str) -> T:
        """Read a stored value back, validating it against the declaration;
        any stored text that cannot be read raises :class:`InvalidValueError`."""
        try:
            value = load_json(text)
        except ValueError as error:
            raise InvalidValueError({self.key: f"stored value is unreadable: {error}"}) from None
        return self.validate(value)

    def parse_text(self, text: str) -> T:
        """Parse a value typed by a person (CLI argument, form field), as
        :meth:`format_text` writes it.

        Strings are taken as they are; booleans accept true/false, yes/no,
        on/off, 1/0; numbers ASCII digits with an optional sign, decimal point
        and exponent (surrounding spaces allowed; no ``1_0``, ``nan`` or other
        scripts' digits); list, dict and json settings take JSON text.

        Example::

            Setting("RATIO", 0.5).parse_text(" 1e-3 ")  # 0.001
        """
        try:
            value = self._kind.parse_text(text)
        except ValueError as error:
            raise self._refuse(self._secret_reason(str(error))) from None
        return self.validate(value)

    def format_text(self, value: T) -> str:
        """``value`` as a person would type it (:meth:`parse_text` reads it back)."""
        return self._kind.format_text(value)

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of this setting's values (choices and bounds left out when secret)."""
        schema: dict[str, Any] = dict(self._kind.json_schema)
        if self.secret:
            return schema | ({"description": self.description} if self.description else {})
        if self.choices is not None:
            schema["enum"] = [self.to_json(choice) for choice in self.choices]
        if self.min_length is not None:
            schema["minItems" if self._kind.sized == "items" else "minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxItems" if self._kind.sized == "items" else "maxLength"] = self.max_length
        if self.schema is not None:
            schema = {"allOf": [schema, dict(self.schema)]} if schema else dict(self.schema)
        schema.update(self._kind.bounds_schema(self.min, self.max))
        if self.description:
            schema["description"] = self.description
        return schema

    @property
    def widget(self) -> str:
        """The admin page's input: ``password`` for secrets, ``checkbox``,
        ``select`` when there are choices, else the kind's (``text``,
        ``number``, ``textarea``, ``date``, ``datetime``, ``url``)."""
        if self.secret:
            return "password"
        if self._kind.widget == "checkbox":
            return "checkbox"
        return "select" if self.choices is not None else self._kind.widget

    def display(self, value: Any) -> Any:
        """``value`` as it may be shown to people, in its JSON form: masked when secret."""
        return SECRET_MASK if self.secret else self.to_json(value)

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON-ready data (default, choices and bounds masked when secret)."""
        return {
            "key": self.key,
            "type": self.kind,
            "description": self.description,
            "default": self.display(self.default),
            "choices": None
            if self.choices is None or self.secret
            else [self.to_json(choice) for choice in self.choices],
            "min": None if self.secret or self.min is None else self._kind.to_json(self.min),
            "max": None if self.secret or self.max is None else self._kind.to_json(self.max),
            "secret": self.secret,
            "group": self.group,
            "restart": self.restart,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "schemes": list(self.schemes or DEFAULT_SCHEMES) if self.kind == "url" else None,
        }


def display_value(declarations: Mapping[str, Setting[Any]], key: str, value: Any) -> Any:
    """``value`` of ``key`` as it may be shown to people: masked when the
    setting is secret or no longer declared (it may have been a secret).
    Every surface that shows values (API, page, CLI, history) uses this."""
    setting = declarations.get(key)
    return SECRET_MASK if setting is None else setting.display(value)


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
        restart=bool(conf.get("restart", False)),
        min_length=conf.get("min_length"),
        max_length=conf.get("max_length"),
        items=conf.get("items"),
        schemes=None if conf.get("schemes") is None else tuple(conf["schemes"]),
        schema=conf.get("schema"),
        validator=conf.get("validator"),
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


def _canonical(value: Any) -> str:
    """``value`` as JSON text with sorted keys: choices are compared by it, so
    ``true`` is not ``1`` and ``1.0`` is not ``1`` (as ``==`` would have it)."""
    return json.dumps(value, allow_nan=False, sort_keys=True, ensure_ascii=False)
