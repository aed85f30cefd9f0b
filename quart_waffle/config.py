"""The ``WAFFLE_*`` options: one table from which the defaults, the resolved
config and the documentation derive.

Precedence, first found wins: constructor argument (not None), ``app.config``,
the process environment, the default.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from quart import Quart
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError
from .kinds import parse_bool, parse_integer, parse_number
from .redaction import mask_credentials
from .sync.redis_address import parse_redis_url

if TYPE_CHECKING:
    from .admin.tokens import NamedToken

Watchtype = Literal["file", "redis", "postgres", "none"]
WATCHTYPES: tuple[Watchtype, ...] = get_args(Watchtype)
logger = logging.getLogger("quart_waffle")

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


def _seconds(low: float, high: float) -> Convert:
    """Seconds between ``low`` and ``high``: text as a person types a number
    (no ``1_0``, ``nan``, ``inf``). The bounds keep an idle worker idle and
    its sleeps representable."""

    def convert(key: str, value: Any) -> float:
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise TypeError
            number = parse_number(value) if isinstance(value, str) else float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigurationError(
                f"{key} must be a number of seconds, got {value!r:.40}"
            ) from None
        if not low <= number <= high:
            raise ConfigurationError(
                f"{key} must be between {low:g} and {high:g} seconds, got {value!r:.40}"
            )
        return number

    return convert


SUPPORTED_DATABASES = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
"""Backend name to the async driver quart-waffle uses for it."""
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _database_url(key: str, value: Any) -> str:
    """A URL of a supported database, on its async driver or none named, that
    outlives a process (no in-memory SQLite); libpq's ``sslmode`` becomes
    asyncpg's ``ssl``. Every refusal is one line naming the fix."""
    url = _name(key, value)
    shown = f"{key}={mask_credentials(url)}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{shown}: not a database URL; use sqlite:///path/to/file.db or"
            " postgresql://user:password@host/database"
        ) from None
    backend = parsed.get_backend_name()
    driver = SUPPORTED_DATABASES.get(backend)
    if driver is None:
        raise ConfigurationError(f"{shown}: unsupported database; use sqlite:// or postgresql://")
    if parsed.drivername not in (backend, driver):
        raise ConfigurationError(
            f"{shown}: quart-waffle is async and talks to {backend} through {driver}:"
            f" use {driver}:// or {backend}://"
        )
    if backend == "sqlite":
        if is_memory_sqlite(parsed.database, parsed.query):
            raise ConfigurationError(
                f"{shown}: an in-memory SQLite database lives and dies with one process"
                " (each worker and each CLI command would have its own, and every value"
                " would be lost): use a file, e.g. sqlite:///waffle.db"
            )
        return url
    if "sslmode" not in parsed.query:
        return url
    sslmode = parsed.query["sslmode"]
    if "ssl" in parsed.query or sslmode not in _SSLMODES:
        raise ConfigurationError(
            f"{shown}: sslmode must be one of {', '.join(_SSLMODES)}, and not given"
            " together with ssl"
        )
    query = {name: text for name, text in parsed.query.items() if name != "sslmode"}
    return parsed.set(query={**query, "ssl": sslmode}).render_as_string(hide_password=False)


def is_memory_sqlite(database: str | None, query: Mapping[str, Any]) -> bool:
    """Whether an SQLite URL's database is in memory (``sqlite://``,
    ``:memory:``, ``mode=memory``), so that no other process sees it."""
    return (
        not database
        or database == ":memory:"
        or database.startswith("file::memory:")
        or "mode=memory" in database
        or query.get("mode") == "memory"
    )


def _redis_url(key: str, value: Any) -> str | None:
    """A ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
    ``redis+cluster://`` URL, read as the channel will read it."""
    url = _text(key, value)
    if url is None:
        return None
    try:
        parse_redis_url(url)
    except ValueError as error:
        # No part of the URL but its scheme: one that does not parse may hold its
        # password anywhere (an unencoded '/', '?' or '#' in it moves the split).
        scheme = url.partition("://")[0] if "://" in url else ""
        plain = scheme.isascii() and scheme.replace("+", "").isalnum()
        shown = f"{scheme}://..." if plain else "..."
        raise ConfigurationError(f"{key}={shown}: {error}") from None
    return url


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


def _admin_tokens(key: str, value: Any) -> tuple[NamedToken, ...]:
    from .admin.tokens import parse_admin_tokens

    return parse_admin_tokens(key, value)


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
        " instance folder. Only these two databases are supported; an in-memory SQLite"
        " database is refused.",
        _database_url,
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
        "How often the `file` channel looks at the file (0.01 to 60).",
        _seconds(0.01, 60.0),
    ),
    Option(
        "check_interval",
        "float (s)",
        5.0,
        "The safety net: every worker checks for anything newer this often (through the"
        " channel's witness, the store on a mismatch; see [sync](sync.md#the-periodic-check)),"
        " whatever the channel (0.1 to 86400).",
        _seconds(0.1, 86400.0),
    ),
    Option(
        "redis_url",
        "str",
        None,
        "Redis for the `redis` channel (`redis://`, `rediss://` or `unix://`; behind"
        " Sentinel `redis+sentinel://host:26379,host2:26379/service/0`; a cluster"
        " `redis+cluster://node:6379,node2:6379`, see"
        " [sync](sync.md#highly-available-redis)); wins over host and port.",
        _redis_url,
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
        "Bearer token for the admin: 16 characters or more, of 8 different ones or more, no"
        " spaces around it. Without it (and without `authorize`) the admin refuses everyone.",
        _text,
    ),
    Option(
        "admin_tokens",
        "mapping",
        None,
        'Named admin tokens, each recorded in history as `token:<name>`: `{"alice": "<token>"}`,'
        ' or `{"ci": {"token": "<token>", "role": "read", "keys": ["FEATURE_*"]}}` (role `admin`'
        " or `read`; `keys`: glob patterns of the keys it may touch). In the environment: the same"
        " as JSON. Each token obeys `admin_token`'s rules. See"
        " [who may change what](admin.md#who-may-change-what).",
        _admin_tokens,
    ),
    Option(
        "metrics_token",
        "str",
        None,
        "Bearer token for `<admin_prefix>/metrics` only, for a Prometheus scraper (the admin's"
        " own credentials work there too); same rules as `admin_token`. See [metrics](metrics.md).",
        _text,
    ),
    Option(
        "metrics_public",
        "bool",
        False,
        "Serve `<admin_prefix>/metrics` to anyone, without credentials (a private network).",
        _boolean,
    ),
    Option(
        "host_id",
        "str",
        None,
        "This host's name in the [fleet](fleet.md) view; default: the machine's host name.",
        _text,
    ),
    Option(
        "version",
        "str",
        None,
        "The app's code version, shown per worker in the [fleet](fleet.md) view; default: the"
        " generation `quart-waffle serve` gives its workers, else none.",
        _text,
    ),
    Option(
        "heartbeat_interval",
        "float (s)",
        None,
        "How often a worker rewrites its [presence](fleet.md) record when nothing changes"
        " (0.1 to 3600); default: 5 on the `redis` and `file` channels, 60 where records"
        " live in the database (`postgres`, `none`).",
        _seconds(0.1, 3600.0),
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
    admin_tokens: tuple[NamedToken, ...] | None
    host_id: str | None
    version: str | None
    heartbeat_interval: float | None
    metrics_token: str | None
    metrics_public: bool

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
        _refuse_unknown_keys(app.config, environ)
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


_warned: set[str] = set()


def _refuse_unknown_keys(config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """A ``WAFFLE_*`` key that looks like a misspelt option is refused in
    ``app.config`` and warned about once in the environment. Others are left
    alone: ``from_prefixed_env`` brings, say, the supervisor's
    ``QUART_WAFFLE_GENERATION`` into ``app.config``."""
    for key in config:
        if key.startswith("WAFFLE_") and key not in DEFAULTS and (hint := _near(key)):
            raise ConfigurationError(f"{key} in app.config is not a quart-waffle option{hint}")
    for key in environ:
        unknown = key.startswith("WAFFLE_") and key not in DEFAULTS and key not in _warned
        if unknown and (hint := _near(key)):
            _warned.add(key)
            logger.warning("the environment variable %s is not an option%s", key, hint)


def _near(key: str) -> str:
    """``": did you mean WAFFLE_X?"`` naming the closest option, or ``""``."""
    names = [option.key[len("WAFFLE_") :] for option in OPTIONS]
    close = difflib.get_close_matches(key[len("WAFFLE_") :], names, 1, 0.8)
    return f": did you mean WAFFLE_{close[0]}?" if close else ""


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
        or database.startswith("file:")
        or os.path.isabs(database)
    ):
        return url
    return parsed.set(database=os.path.join(instance_path, database)).render_as_string(
        hide_password=False
    )
