"""The ``WAFFLE_*`` options: one table from which the defaults, the resolved
config and the documentation derive.

Precedence, first found wins: constructor argument (not None), ``app.config``,
the process environment, the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from quart import Quart
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError
from .kinds import parse_bool, parse_integer, parse_number

Watchtype = Literal["file", "redis", "postgres", "none"]
WATCHTYPES: tuple[Watchtype, ...] = get_args(Watchtype)

Convert = Callable[[str, Any], Any]
"""Turn a raw option value (a Python value, or text from the environment) into
its type, raising :class:`ConfigurationError` naming the key."""


def _text(key: str, value: Any) -> str | None:
    """A string; empty means none (for the admin prefix: no admin)."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string, got {type(value).__name__}")
    return value or None


def _name(key: str, value: Any) -> str:
    """A string that may not be empty."""
    text = _text(key, value)
    if text is None:
        raise ConfigurationError(f"{key} may not be empty")
    return text


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    parsed = parse_bool(value) if isinstance(value, str) else None
    if parsed is None:
        raise ConfigurationError(f"{key} must be true or false, got {value!r}")
    return parsed


def _positive(key: str, value: Any) -> float:
    """Seconds: text as a person types a number (no ``1_0``, ``nan``, ``inf``)."""
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TypeError
        number = parse_number(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a number of seconds, got {value!r}") from None
    if not 0 < number < float("inf"):
        raise ConfigurationError(f"{key} must be a positive number of seconds, got {value!r}")
    return number


def _port(key: str, value: Any) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError
        port = parse_integer(value) if isinstance(value, str) else value
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"{key} must be a port number (1-65535), got {value!r}")
    return port


def _watchtype(key: str, value: Any) -> Watchtype:
    for watchtype in WATCHTYPES:
        if value == watchtype:
            return watchtype
    raise ConfigurationError(f"{key} must be one of {', '.join(WATCHTYPES)}, got {value!r}")


def _confs(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a mapping, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Option:
    """One ``WAFFLE_*`` option: the constructor argument ``name`` and the
    config key ``WAFFLE_<NAME>``."""

    name: str
    type: str
    default: Any
    meaning: str
    convert: Convert
    from_environment: bool = True

    @property
    def key(self) -> str:
        """The ``app.config`` key and environment variable."""
        return f"WAFFLE_{self.name.upper()}"

    def row(self) -> str:
        """This option as a row of the documentation's Markdown table."""
        default = f'"{self.default}"' if isinstance(self.default, str) else repr(self.default)
        return f"| `{self.name}` | `{self.key}` | {self.type} | `{default}` | {self.meaning} |"


OPTIONS: tuple[Option, ...] = (
    Option(
        "confs",
        "mapping",
        {},
        "The declared settings ([below](#declaring-settings)). Not read from the environment.",
        _confs,
        from_environment=False,
    ),
    Option(
        "database_url",
        "str",
        "sqlite:///waffle.db",
        "Where values live. `sqlite://` and `postgresql://` URLs get the async driver"
        " (aiosqlite, asyncpg) automatically; a relative SQLite path is relative to the"
        " instance folder.",
        _name,
    ),
    Option(
        "create_tables",
        "bool",
        True,
        "Create the tables at start-up if missing. Turn off when you manage them with Alembic.",
        _boolean,
    ),
    Option(
        "multiproc",
        "bool",
        True,
        '`False` means one process: the same as `watchtype="none"`.',
        _boolean,
    ),
    Option(
        "watchtype",
        '`"file"`, `"redis"`, `"postgres"`, `"none"`',
        "file",
        "How workers hear about changes. See [sync](sync.md).",
        _watchtype,
    ),
    Option(
        "watcher_file",
        "str",
        "waffle.revision",
        "The file the `file` channel writes and watches; a relative path is relative to"
        " the instance folder.",
        _name,
    ),
    Option(
        "watch_interval",
        "float (s)",
        0.05,
        "How often the `file` channel looks at the file.",
        _positive,
    ),
    Option(
        "check_interval",
        "float (s)",
        5.0,
        "The safety net: every worker checks for anything newer this often (through the"
        " channel's witness, the store on a mismatch; see [sync](sync.md#the-periodic-check)),"
        " whatever the channel.",
        _positive,
    ),
    Option(
        "redis_url",
        "str",
        None,
        "Redis for the `redis` channel; wins over host and port.",
        _text,
    ),
    Option("redis_host", "str", "localhost", "Redis host, without `redis_url`.", _name),
    Option("redis_port", "int", 6379, "Redis port, without `redis_url`.", _port),
    Option("redis_channel", "str", "waffleconf", "The Redis pub/sub channel name.", _name),
    Option(
        "sync_key",
        "str",
        None,
        "Signs the changes a message carries to other workers (an HMAC key is derived"
        " from it); without it `SECRET_KEY` is used, and without either only bare hints"
        " are sent. The same on every worker. See [sync](sync.md#trust).",
        _text,
    ),
    Option(
        "mirror_config",
        "bool",
        True,
        'Copy every value into `app.config`, so `current_app.config["KEY"]` works.',
        _boolean,
    ),
    Option(
        "admin_prefix",
        "str",
        "/waffle",
        "Where the [admin](admin.md) is mounted: path segments of ASCII letters, digits"
        ' and `- . _ ~` (others are refused); `""` turns it off.',
        _text,
    ),
    Option(
        "admin_token",
        "str",
        None,
        "Bearer token for the admin: 16 characters or more, no spaces around it. Without"
        " it (and without `authorize`) the admin refuses everyone.",
        _text,
    ),
)
DEFAULTS: Mapping[str, Any] = {option.key: option.default for option in OPTIONS}


def options_table() -> str:
    """The Markdown table of every option, as docs/configuration.md shows it."""
    header = "| argument | key | type | default | meaning |\n| --- | --- | --- | --- | --- |"
    return "\n".join([header, *(option.row() for option in OPTIONS)])


@dataclass(frozen=True)
class WaffleConfig:
    """The resolved options of one app; field ``x`` is option ``WAFFLE_X``.
    Paths are absolute."""

    confs: Mapping[str, Mapping[str, Any]]
    database_url: str
    create_tables: bool
    multiproc: bool
    watchtype: Watchtype
    watcher_file: str
    watch_interval: float
    check_interval: float
    redis_url: str | None
    redis_host: str
    redis_port: int
    redis_channel: str
    sync_key: str | None
    mirror_config: bool
    admin_prefix: str | None
    admin_token: str | None

    @classmethod
    def resolve(
        cls,
        app: Quart,
        arguments: Mapping[str, Any],
        environ: Mapping[str, str] = os.environ,
    ) -> WaffleConfig:
        """Resolve every option for ``app``: a constructor argument (by name;
        None means not given), else ``app.config``, else ``environ``, else the
        default. Raises :class:`ConfigurationError` naming the key."""
        values: dict[str, Any] = {}
        for option in OPTIONS:
            raw = arguments.get(option.name)
            if raw is None:
                raw = app.config.get(option.key)
            if raw is None and option.from_environment:
                raw = environ.get(option.key)
            values[option.name] = option.default if raw is None else option.convert(option.key, raw)
        values["database_url"] = sqlite_in_instance(values["database_url"], app.instance_path)
        values["watcher_file"] = os.path.join(app.instance_path, values["watcher_file"])
        if not values["multiproc"]:
            values["watchtype"] = "none"
        return cls(**values)


def sqlite_in_instance(url: str, instance_path: str) -> str:
    """``url`` with a relative SQLite file path made absolute under
    ``instance_path``; any other URL (or text that is no URL, which the store
    refuses when it starts) unchanged."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or os.path.isabs(database)
    ):
        return url
    return parsed.set(database=os.path.join(instance_path, database)).render_as_string(
        hide_password=False
    )
