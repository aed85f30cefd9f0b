"""The config file of `quart-waffle serve` (``-c quart-waffle.toml``): TOML, flat keys.

Keys are Hypercorn's names where Hypercorn has the option (``bind``, ``workers``,
``graceful_timeout``, ``accesslog``, ``loglevel``, ``pid_path``, ...), else the `ServeConfig`
field's own name (``app``, ``max_surge``, ``min_active``, ``timeout``, ...). Every value is
checked as its command-line option is (the same bounds, from `options.RANGES`); an unknown key
is an error naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from typing import Any, Literal

from .config import ServeConfig
from .options import MIN_ACTIVE, RANGES, Bounds, out_of_range

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PID_FILE = "pid_file"  # not a ServeConfig field: the command line's

RENAMED = {
    "bind": "binds",
    "insecure_bind": "insecure_binds",
    "accesslog": "access_logfile",
    "errorlog": "error_logfile",
    "loglevel": "log_level",
    "pid_path": PID_FILE,
}
"""Hypercorn's key names whose `ServeConfig` field is named otherwise."""

RESTART_ONLY = (
    "binds",
    "insecure_binds",
    "backlog",
    "control_socket",
    "reload",
    "reload_dirs",
    "reload_includes",
    "reload_excludes",
    "release_link",
    "metrics_file",
    "timeout",
)
"""Fields a reload cannot change: the sockets are bound once, for the supervisor's life; the
code watcher, the release link and the metrics file are set up once too; and the liveness
timeout judges workers started with the heartbeat interval of the old one."""


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(ServeConfig)
    types_ = {field.name: hints[field.name] for field in dataclasses.fields(ServeConfig)}
    types_[PID_FILE] = str
    return types_


def keys() -> dict[str, str]:
    """Every key a config file may hold, and the field it sets, in the fields' order."""
    by_field = {field: key for key, field in RENAMED.items()}
    return {by_field.get(name, name): name for name in _field_types()}


def bounds_of(field: str) -> Bounds | None:
    return MIN_ACTIVE if field == "min_active" else RANGES.get(field)


def describe_kind(field: str) -> str:
    """How a value of `field` is written in the file, for the reference table."""
    kind = _field_types()[field]
    bounds = bounds_of(field)
    if field == "log_level":
        return " \\| ".join(f'`"{level}"`' for level in LOG_LEVELS)
    if typing.get_origin(kind) is Literal:
        return " \\| ".join(f"`{value!r}`".replace("'", '"') for value in typing.get_args(kind))
    base = _without_none(kind)
    text = {int: "integer", float: "number", str: "string", bool: "true or false"}.get(
        base, "list of strings" if typing.get_origin(base) is list else str(base)
    )
    if bounds is not None:
        text += f", {bounds[0]:g} to {bounds[1]:g}"
    return text


def load(path: str) -> dict[str, Any]:
    """The values of the config file at `path`, by `ServeConfig` field (and ``pid_file``).

    Raises `ValueError` with one line naming the file and, for a bad value, the key.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ValueError(f"config file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path}: not valid TOML: {error}") from None
    known = keys()
    types_ = _field_types()
    values: dict[str, Any] = {}
    for key, value in document.items():
        field = known.get(key)
        if field is None:
            close = difflib.get_close_matches(key, [*known, *RENAMED.values()], n=1)
            hint = ""
            if close:
                suggestion = {v: k for k, v in RENAMED.items()}.get(close[0], close[0])
                hint = f" (did you mean {suggestion!r}?)"
            raise ValueError(f"config file {path}: unknown key {key!r}{hint}")
        try:
            values[field] = _check(field, types_[field], value)
        except ValueError as error:
            raise ValueError(f"config file {path}: {key}: {error}") from None
    return values


def _without_none(kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        others = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return kind


def _check(field: str, kind: Any, value: Any) -> Any:
    base = _without_none(kind)
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if base in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(
                f"must be {'an integer' if base is int else 'a number'}, got {value!r}"
            )
        if base is int and not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        bounds = bounds_of(field)
        if bounds is not None and (problem := out_of_range(value, bounds)):
            raise ValueError(problem)
        return base(value)
    if typing.get_origin(base) is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError(f"must be a string or a list of strings, got {value!r}")
        return items
    if typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if base is str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        if field == "log_level" and value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.lower() if field == "log_level" else value
    return value


def restart_only_changes(old: ServeConfig, new: ServeConfig) -> list[str]:
    """What `new` changes that only a restart can: ``bind: [...] -> [...]`` for each."""
    by_field = {field: key for key, field in RENAMED.items()}
    changes = [
        f"{by_field.get(name, name)} {getattr(old, name)!r} -> {getattr(new, name)!r}"
        for name in RESTART_ONLY
        if getattr(old, name) != getattr(new, name)
    ]
    if (old.certfile is None) != (new.certfile is None):
        changes.append("TLS turned " + ("on" if new.certfile else "off"))
    return changes


def absolute(path: str) -> str:
    """`path` made absolute now, so a re-read on reload finds the same file."""
    return os.path.abspath(path)
