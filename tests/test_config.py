"""Option resolution: argument > app.config > environment > default, conversions,
and the option table the documentation shows."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from quart_waffle import ConfigurationError, QuartWaffle
from quart_waffle.config import DEFAULTS, OPTIONS, WaffleConfig, options_table

ROOT = Path(__file__).resolve().parent.parent


def resolve(
    config: dict[str, object], environ: dict[str, str] | None = None, **arguments: object
) -> WaffleConfig:
    app = Quart(__name__)
    app.config.update(config)
    return WaffleConfig.resolve(app, arguments, environ or {})


def test_precedence_argument_then_config_then_environment_then_default() -> None:
    environ = {"WAFFLE_WATCHTYPE": "redis"}
    assert resolve({}).watchtype == "file"
    assert resolve({}, environ).watchtype == "redis"
    assert resolve({"WAFFLE_WATCHTYPE": "postgres"}, environ).watchtype == "postgres"
    assert resolve({"WAFFLE_WATCHTYPE": "postgres"}, environ, watchtype="none").watchtype == "none"
    # None means "not given", at every level
    assert resolve({"WAFFLE_WATCHTYPE": None}, environ, watchtype=None).watchtype == "redis"


def test_the_extension_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFFLE_CHECK_INTERVAL", "0.5")
    monkeypatch.setenv("WAFFLE_ADMIN_PREFIX", "")
    waffle = QuartWaffle(Quart(__name__))
    assert waffle.config.check_interval == 0.5
    assert waffle.config.admin_prefix is None


def test_admin_can_be_turned_off_by_argument_or_config() -> None:
    assert resolve({}).admin_prefix == "/waffle"
    assert resolve({}, admin_prefix="").admin_prefix is None
    assert resolve({"WAFFLE_ADMIN_PREFIX": ""}).admin_prefix is None
    app = Quart(__name__)
    QuartWaffle(app, admin_prefix="", watchtype="none")
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/waffle")]


def test_environment_text_is_converted() -> None:
    config = resolve(
        {},
        {
            "WAFFLE_CREATE_TABLES": "false",
            "WAFFLE_CHECK_INTERVAL": " 0.5 ",
            "WAFFLE_REDIS_PORT": "6380",
            "WAFFLE_MULTIPROC": "off",
            "WAFFLE_CONFS": "ignored",
            "UNRELATED": "x",
        },
    )
    assert config.create_tables is False
    assert config.check_interval == 0.5
    assert config.redis_port == 6380
    assert config.watchtype == "none"  # multiproc off means one process
    assert config.confs == {}


def test_relative_paths_are_in_the_instance_folder(tmp_path: Path) -> None:
    app = Quart(__name__, instance_path=str(tmp_path / "instance"))
    config = WaffleConfig.resolve(app, {}, {})
    assert config.database_url == f"sqlite:///{tmp_path}/instance/waffle.db"
    assert config.watcher_file == f"{tmp_path}/instance/waffle.revision"
    for url in ("sqlite:///data/w.db", "sqlite+aiosqlite:///data/w.db"):
        config = WaffleConfig.resolve(app, {"database_url": url, "watcher_file": "rev"}, {})
        assert config.database_url.endswith(f":///{tmp_path}/instance/data/w.db")
        assert config.watcher_file == f"{tmp_path}/instance/rev"
    for kept in ("sqlite:////abs/w.db", "postgresql://u:p@h/db"):
        assert WaffleConfig.resolve(app, {"database_url": kept}, {}).database_url == kept


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"WAFFLE_WATCHTYPE": "carrier-pigeon"}, "WAFFLE_WATCHTYPE must be one of"),
        ({"WAFFLE_CHECK_INTERVAL": "soon"}, "WAFFLE_CHECK_INTERVAL must be a number"),
        ({"WAFFLE_WATCH_INTERVAL": 0}, "WAFFLE_WATCH_INTERVAL must be between 0.01 and 60"),
        ({"WAFFLE_CHECK_INTERVAL": "nan"}, "WAFFLE_CHECK_INTERVAL must be a number"),
        ({"WAFFLE_CHECK_INTERVAL": "1_0"}, "WAFFLE_CHECK_INTERVAL must be a number"),
        ({"WAFFLE_CHECK_INTERVAL": -1}, "WAFFLE_CHECK_INTERVAL must be between 0.1 and 86400"),
        ({"WAFFLE_CHECK_INTERVAL": True}, "WAFFLE_CHECK_INTERVAL must be a number"),
        ({"WAFFLE_REDIS_PORT": "6_379"}, "WAFFLE_REDIS_PORT must be a port number"),
        ({"WAFFLE_REDIS_PORT": 6379.5}, "WAFFLE_REDIS_PORT must be a port number"),
        ({"WAFFLE_MULTIPROC": 2}, "WAFFLE_MULTIPROC must be true or false"),
        ({"WAFFLE_CREATE_TABLES": "perhaps"}, "WAFFLE_CREATE_TABLES must be true or false"),
        ({"WAFFLE_REDIS_PORT": "70000"}, r"WAFFLE_REDIS_PORT must be a port number \(1-65535\)"),
        ({"WAFFLE_DATABASE_URL": 5}, "WAFFLE_DATABASE_URL must be a string"),
        ({"WAFFLE_DATABASE_URL": ""}, "WAFFLE_DATABASE_URL may not be empty"),
        ({"WAFFLE_CONFS": ["GREETING"]}, "WAFFLE_CONFS must be a mapping"),
        # an idle worker must stay idle, and its sleeps representable
        ({"WAFFLE_CHECK_INTERVAL": 1e-300}, "WAFFLE_CHECK_INTERVAL must be between 0.1 and"),
        ({"WAFFLE_WATCH_INTERVAL": 1e-7}, "WAFFLE_WATCH_INTERVAL must be between 0.01 and"),
        ({"WAFFLE_WATCH_INTERVAL": "1e9"}, "WAFFLE_WATCH_INTERVAL must be between"),
        ({"WAFFLE_CHECK_INTERVAL": 10**400}, "WAFFLE_CHECK_INTERVAL must be a number of seconds"),
        ({"WAFFLE_CHECK_INTERVAL": "1e400"}, "WAFFLE_CHECK_INTERVAL must be a number of seconds"),
        # the redis URL is checked when the app is created, not by a worker later
        ({"WAFFLE_REDIS_URL": "http://x"}, "scheme must be redis://, rediss:// or unix://"),
        (
            {"WAFFLE_REDIS_URL": "redis://:pw@x:99999/0"},
            r"REDIS_URL=redis://\.\.\.: Port out of range",
        ),
        ({"WAFFLE_REDIS_URL": "redis://x:port/0"}, "WAFFLE_REDIS_URL=redis://...: a port must be"),
        # the database URL too: one line, as the CLI says it
        (
            {"WAFFLE_DATABASE_URL": "mysql://u:pw@host/db"},
            r"^WAFFLE_DATABASE_URL=mysql://\*\*\*@host/db: unsupported database; use sqlite://"
            " or postgresql://$",
        ),
        ({"WAFFLE_DATABASE_URL": "not a url"}, "not a database URL; use sqlite:///"),
        (
            {"WAFFLE_DATABASE_URL": "postgresql+psycopg2://h/db"},
            "use postgresql\\+asyncpg:// or postgresql://",
        ),
        (
            {"WAFFLE_DATABASE_URL": "sqlite+pysqlite:///w.db"},
            "use sqlite\\+aiosqlite:// or sqlite://",
        ),
        ({"WAFFLE_DATABASE_URL": "postgresql://h/db?sslmode=sometimes"}, "sslmode must be one of"),
        # a misspelt option in app.config is refused, naming the closest one
        (
            {"WAFFLE_WATCHTYP": "redis"},
            "WAFFLE_WATCHTYP in app.config is not a quart-waffle option:"
            " did you mean WAFFLE_WATCHTYPE\\?",
        ),
    ],
)
def test_bad_options_name_the_key(config: dict[str, object], message: str) -> None:
    app = Quart(__name__)
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        QuartWaffle(app)
    assert "waffle" not in app.extensions
    assert issubclass(ConfigurationError, ValueError)


def test_extreme_numbers_as_arguments_name_the_key() -> None:
    with pytest.raises(ConfigurationError, match="WAFFLE_CHECK_INTERVAL must be a number"):
        QuartWaffle(Quart(__name__), check_interval=10**400)
    accepted = resolve({}, watch_interval=0.01, check_interval=86400)
    assert (accepted.watch_interval, accepted.check_interval) == (0.01, 86400.0)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite+aiosqlite:///:memory:",
        "sqlite:///file:shared?mode=memory&cache=shared&uri=true",
        "sqlite:///file::memory:?uri=true",
    ],
)
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(
        ConfigurationError, match=r"in-memory SQLite .* use a file, e.g. sqlite:///"
    ):
        QuartWaffle(Quart(__name__), database_url=url)


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    config = resolve({"WAFFLE_DATABASE_URL": "postgresql://u:p@h/db?sslmode=require"})
    assert config.database_url == "postgresql://u:p@h/db?ssl=require"


async def test_sslmode_url_connects_to_postgresql(postgres_url: str) -> None:
    app = Quart(__name__)
    app.config["WAFFLE_CONFS"] = {"GREETING": {"default": "Hello"}}
    waffle = QuartWaffle(app, database_url=f"{postgres_url}?sslmode=prefer", watchtype="none")
    async with waffle.connected():
        assert await waffle.update({"GREETING": "Hi"}) == 1


def test_other_waffle_keys_are_left_alone() -> None:
    """``from_prefixed_env`` turns the supervisor's QUART_WAFFLE_GENERATION
    into app.config["WAFFLE_GENERATION"]: not a misspelt option."""
    assert resolve({"WAFFLE_GENERATION": "3"}).watchtype == "file"


def test_a_misspelt_environment_variable_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"WAFFLE_CHEK_INTERVAL": "1", "WAFFLE_TEST_SOMETHING_ELSE": "x"}
    with caplog.at_level("WARNING", logger="quart_waffle"):
        resolve({}, environ)
        resolve({}, environ)
    assert [record.getMessage() for record in caplog.records] == [
        "the environment variable WAFFLE_CHEK_INTERVAL is not an option:"
        " did you mean WAFFLE_CHECK_INTERVAL?"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://admin:Sup3rS/cretPw@h1:26379/mymaster",
        "redis://:Sup3rS/cretPw@h1:6379/0",
        "redis+cluster://u:Sup3rS?cretPw@n1:6379",
        "redis://u:Sup3rS#cretPw@h1:6379/0",
        "redis+sentinel://:Sup3rS@h1:badport/mymaster",
    ],
)
def test_a_bad_redis_url_error_shows_its_scheme_only(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve({"WAFFLE_REDIS_URL": url})
    message = str(caught.value)
    assert message.startswith(f"WAFFLE_REDIS_URL={url.partition('://')[0]}://...: ")
    for secret in ("Sup3rS", "cretPw", "h1"):
        assert secret not in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:Sup3rS/cretPw@h1/db",
        "postgresql://u:Sup3rS#cretPw@h1/db?sslmode=sometimes",
        "postgresql://u:Sup3rS?cretPw@h1/db?sslmode=sometimes",
    ],
)
def test_a_bad_database_url_error_masks_an_unencoded_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve({"WAFFLE_DATABASE_URL": url})
    for secret in ("Sup3rS", "cretPw"):
        assert secret not in str(caught.value)


def test_constructor_takes_each_option_by_name() -> None:
    parameters = inspect.signature(QuartWaffle).parameters
    names = {option.name for option in OPTIONS}
    assert set(parameters) == {"app", "settings", "engine", "authorize", "authorize_keys", *names}
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in names)
    assert all(parameters[name].default is None for name in names)
    with pytest.raises(TypeError):
        QuartWaffle(Quart(__name__), colour="blue")  # type: ignore[call-arg]


def test_defaults_derive_from_the_table() -> None:
    assert {option.key: option.default for option in OPTIONS} == DEFAULTS
    config = resolve({})
    for option in OPTIONS:
        if option.name not in ("database_url", "watcher_file", "admin_token", "redis_url"):
            assert getattr(config, option.name) == option.default


def test_docs_table_is_the_option_table() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert options_table() in docs


def test_package_exports_resolve() -> None:
    import quart_waffle

    for name in quart_waffle.__all__:
        assert getattr(quart_waffle, name) is not None
    with pytest.raises(AttributeError):
        _ = quart_waffle.Nope  # type: ignore[attr-defined]


def test_cli_and_workers_read_the_same_environment(tmp_path: Path) -> None:
    """``quart waffle`` in a shell with WAFFLE_DATABASE_URL set writes where a
    worker started with the same environment reads."""
    (tmp_path / "envapp.py").write_text(
        "from quart import Quart\n"
        "from quart_waffle import QuartWaffle\n"
        "app = Quart(__name__)\n"
        "app.config['WAFFLE_CONFS'] = {'GREETING': {'default': 'Hello'}}\n"
        "waffle = QuartWaffle(app)\n"
    )
    environ: dict[str, Any] = {
        **os.environ,
        "QUART_APP": "envapp:app",
        "WAFFLE_DATABASE_URL": f"sqlite:///{tmp_path}/shared/env.db",
        "WAFFLE_WATCHTYPE": "none",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
    }
    quart = [sys.executable, "-m", "quart", "waffle"]
    run = subprocess.run(
        [*quart, "set", "GREETING=from the environment"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "shared" / "env.db").exists()
    got = subprocess.run(
        [*quart, "get", "GREETING"], cwd=tmp_path, env=environ, capture_output=True, text=True
    )
    assert got.stdout.strip() == '"from the environment"'
