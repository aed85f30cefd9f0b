"""The ``WAFFLE_*`` options: defaults, and the precedence argument > app.config > default."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

from quart import Quart

from .errors import DeclarationError
from .settings import parse_bool

DEFAULTS: Mapping[str, Any] = {
    "WAFFLE_CONFS": {},
    "WAFFLE_DATABASE_URL": None,
    "WAFFLE_CREATE_TABLES": True,
    "WAFFLE_MULTIPROC": True,
    "WAFFLE_WATCHTYPE": "file",
    "WAFFLE_WATCHER_FILE": None,
    "WAFFLE_WATCH_INTERVAL": 0.05,
    "WAFFLE_CHECK_INTERVAL": 5.0,
    "WAFFLE_REDIS_URL": None,
    "WAFFLE_REDIS_HOST": "localhost",
    "WAFFLE_REDIS_PORT": 6379,
    "WAFFLE_REDIS_CHANNEL": "waffleconf",
    "WAFFLE_MIRROR_CONFIG": True,
    "WAFFLE_ADMIN_PREFIX": "/waffle",
    "WAFFLE_ADMIN_TOKEN": None,
}
WATCHTYPES = ("file", "redis", "postgres", "none")


def load_environment(
    config: MutableMapping[str, Any], environ: Mapping[str, str] = os.environ
) -> None:
    """Copy every ``WAFFLE_*`` option set in the environment into ``config``
    (as text; :meth:`WaffleConfig.resolve` converts it).

    Example: ``load_environment(app.config)`` before ``QuartWaffle(app)``.
    """
    for key in DEFAULTS:
        if key in environ and key != "WAFFLE_CONFS":
            config[key] = environ[key]


def _as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, str):
        return bool(value)
    parsed = parse_bool(value) if value.strip() else False
    if parsed is None:
        raise DeclarationError(f"{key} must be true or false, got {value!r}")
    return parsed


def _as_number(key: str, value: Any, kind: type[float] | type[int]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DeclarationError(f"{key} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class WaffleConfig:
    """The resolved options of one app; field ``x`` is key ``WAFFLE_X``."""

    confs: Mapping[str, Mapping[str, Any]]
    database_url: str
    create_tables: bool
    multiproc: bool
    watchtype: str
    watcher_file: str
    watch_interval: float
    check_interval: float
    redis_url: str | None
    redis_host: str
    redis_port: int
    redis_channel: str
    mirror_config: bool
    admin_prefix: str | None
    admin_token: str | None

    @classmethod
    def resolve(cls, app: Quart, overrides: Mapping[str, Any]) -> WaffleConfig:
        """Resolve every option for ``app``; ``overrides`` are constructor
        arguments by field name, only those given (None included)."""
        unknown = set(overrides) - {field.name for field in fields(cls)}
        if unknown:
            raise TypeError(f"unknown QuartWaffle options: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = f"WAFFLE_{field.name.upper()}"
            if field.name in overrides:
                values[field.name] = overrides[field.name]
            else:
                values[field.name] = app.config.get(key, DEFAULTS[key])
        if values["database_url"] is None:
            values["database_url"] = "sqlite+aiosqlite:///" + os.path.join(
                app.instance_path, "waffle.db"
            )
        if values["watcher_file"] is None:
            values["watcher_file"] = os.path.join(app.instance_path, "waffle.revision")
        for name in ("create_tables", "multiproc", "mirror_config"):
            values[name] = _as_bool(f"WAFFLE_{name.upper()}", values[name])
        if not values["multiproc"]:
            values["watchtype"] = "none"
        if values["watchtype"] not in WATCHTYPES:
            raise DeclarationError(
                f"WAFFLE_WATCHTYPE must be one of {', '.join(WATCHTYPES)}, "
                f"got {values['watchtype']!r}"
            )
        for name in ("watch_interval", "check_interval"):
            values[name] = _as_number(f"WAFFLE_{name.upper()}", values[name], float)
            if values[name] <= 0:
                raise DeclarationError(f"WAFFLE_{name.upper()} must be positive")
        values["redis_port"] = _as_number("WAFFLE_REDIS_PORT", values["redis_port"], int)
        values["admin_prefix"] = values["admin_prefix"] or None
        values["admin_token"] = values["admin_token"] or None
        return cls(**values)
