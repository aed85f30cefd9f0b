"""Option resolution: argument > app.config > default, and conversions."""

from __future__ import annotations

import pytest
from quart import Quart

from quart_waffle import DeclarationError, QuartWaffle
from quart_waffle.config import WaffleConfig, load_environment


def resolve(config: dict[str, object], **overrides: object) -> WaffleConfig:
    app = Quart(__name__)
    app.config.update(config)
    return WaffleConfig.resolve(app, overrides)


def test_precedence() -> None:
    assert resolve({}).watchtype == "file"
    assert resolve({"WAFFLE_WATCHTYPE": "redis"}).watchtype == "redis"
    assert resolve({"WAFFLE_WATCHTYPE": "redis"}, watchtype="postgres").watchtype == "postgres"


def test_admin_can_be_turned_off_by_argument_or_config() -> None:
    assert resolve({}).admin_prefix == "/waffle"
    assert resolve({}, admin_prefix=None).admin_prefix is None
    assert resolve({"WAFFLE_ADMIN_PREFIX": ""}).admin_prefix is None
    app = Quart(__name__)
    QuartWaffle(app, admin_prefix=None, watchtype="none")
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/waffle")]


def test_environment_text_is_converted() -> None:
    app = Quart(__name__)
    load_environment(
        app.config,
        {
            "WAFFLE_CREATE_TABLES": "false",
            "WAFFLE_CHECK_INTERVAL": "0.5",
            "WAFFLE_REDIS_PORT": "6380",
            "WAFFLE_MULTIPROC": "off",
            "WAFFLE_CONFS": "ignored",
            "UNRELATED": "x",
        },
    )
    config = WaffleConfig.resolve(app, {})
    assert config.create_tables is False
    assert config.check_interval == 0.5
    assert config.redis_port == 6380
    assert config.watchtype == "none"  # multiproc off means one process
    assert config.confs == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"WAFFLE_WATCHTYPE": "carrier-pigeon"}, "WAFFLE_WATCHTYPE must be one of"),
        ({"WAFFLE_CHECK_INTERVAL": "soon"}, "WAFFLE_CHECK_INTERVAL must be a number"),
        ({"WAFFLE_WATCH_INTERVAL": 0}, "WAFFLE_WATCH_INTERVAL must be positive"),
        ({"WAFFLE_CREATE_TABLES": "perhaps"}, "WAFFLE_CREATE_TABLES must be true or false"),
    ],
)
def test_bad_options_name_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        resolve(config)


def test_unknown_argument() -> None:
    with pytest.raises(TypeError, match="unknown QuartWaffle options"):
        QuartWaffle(Quart(__name__), colour="blue")


def test_package_exports_resolve() -> None:
    import quart_waffle

    for name in quart_waffle.__all__:
        assert getattr(quart_waffle, name) is not None
    with pytest.raises(AttributeError):
        _ = quart_waffle.Nope  # type: ignore[attr-defined]
