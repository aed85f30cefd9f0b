"""``quart waffle ...``: read and change settings from a shell."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

import click
from quart import Quart
from quart.cli import ScriptInfo, pass_script_info
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from .errors import StoreUnavailableError, WaffleError
from .extension import QuartWaffle
from .redaction import describe_error, mask_credentials
from .settings import display_value

R = TypeVar("R")


# The drivers quart-waffle supports, and the extra that installs each one.
_EXTRAS = {"asyncpg": "postgres", "redis": "redis", "aiosqlite": ""}
_MISSING_TABLE = re.compile(r'no such table: waffle_|relation "waffle_\w*" does not exist')


def _run(info: ScriptInfo, action: Callable[[QuartWaffle], Awaitable[R]]) -> R:
    """Load the app, connect quart-waffle, run ``action``; every error becomes
    one line and exit status 1."""
    try:
        app: Quart = info.load_app()
    except WaffleError as error:
        raise click.ClickException(str(error)) from None
    waffle: QuartWaffle = app.extensions["waffle"]

    async def main() -> R:
        async with app.app_context(), waffle.connected():
            return await action(waffle)

    try:
        return asyncio.run(main())
    except Exception as error:
        raise click.ClickException(_explain(error, waffle)) from None


def _explain(error: Exception, waffle: QuartWaffle) -> str:
    """One line that says what went wrong and, for a setup mistake, the fix."""
    config = waffle.config
    url = mask_credentials(config.database_url) if config and config.database_url else "?"
    cause = error.__cause__ if isinstance(error, StoreUnavailableError) else error
    if isinstance(cause, SQLAlchemyError) and _MISSING_TABLE.search(str(cause)):
        return (
            f"the settings tables do not exist in {url} and WAFFLE_CREATE_TABLES is off:"
            " create them (your migrations, or one start with WAFFLE_CREATE_TABLES=true)"
        )
    if isinstance(error, WaffleError):
        return str(error)
    if isinstance(error, NoSuchModuleError | ModuleNotFoundError) and not _supported(url):
        return f"WAFFLE_DATABASE_URL={url}: unsupported database; use sqlite:// or postgresql://"
    if isinstance(error, ModuleNotFoundError) and error.name in _EXTRAS:
        extra = _EXTRAS[error.name]
        package = f"quart-waffle[{extra}]" if extra else "quart-waffle"
        return f"the {error.name} driver is not installed: pip install {package}"
    if isinstance(error, ArgumentError):
        return f"WAFFLE_DATABASE_URL={url}: not a database URL ({describe_error(error)})"
    return describe_error(error)


def _supported(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() in ("sqlite", "postgresql")
    except ArgumentError:
        return True  # not a URL at all: said as such


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@click.group("waffle")
def waffle_cli() -> None:
    """Read and change quart-waffle settings."""


@waffle_cli.command("list")
@pass_script_info
def list_command(info: ScriptInfo) -> None:
    """Every setting with its type, value and the revision that last changed it."""

    async def action(waffle: QuartWaffle) -> None:
        snapshot = waffle.snapshot
        click.echo(f"revision {snapshot.revision}")
        for key, setting in waffle.declarations.items():
            value = setting.display(snapshot.values[key])
            click.echo(
                f"{key}\t{setting.kind}\t{_dump(value)}\t(revision {snapshot.revisions[key]})"
            )

    _run(info, action)


@waffle_cli.command("get")
@click.argument("key")
@click.option("--reveal", is_flag=True, help="Print a secret setting's value.")
@pass_script_info
def get_command(info: ScriptInfo, key: str, reveal: bool) -> None:
    """Print one setting's value as JSON."""

    async def action(waffle: QuartWaffle) -> None:
        setting = waffle.setting(key)
        value = waffle.get(key)
        click.echo(_dump(value if reveal else setting.display(value)))

    _run(info, action)


@waffle_cli.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--expect-revision", type=int, help="Fail if a key changed after this revision.")
@click.option("--actor", help="Recorded in history (default: cli:<user>).")
@pass_script_info
def set_command(
    info: ScriptInfo, assignments: tuple[str, ...], expect_revision: int | None, actor: str | None
) -> None:
    """Change one or more settings atomically. Values are typed as in a form:
    true/false for booleans, JSON for lists and objects."""
    raw: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise click.BadParameter(f"{assignment!r} is not KEY=VALUE", param_hint="assignments")
        raw[key] = value

    async def action(waffle: QuartWaffle) -> int:
        values = {key: waffle.setting(key).parse_text(text) for key, text in raw.items()}
        return await waffle.update(values, expected_revision=expect_revision, actor=_actor(actor))

    click.echo(f"revision {_run(info, action)}")


@waffle_cli.command("reset")
@click.argument("keys", nargs=-1, required=True)
@click.option("--actor", help="Recorded in history (default: cli:<user>).")
@pass_script_info
def reset_command(info: ScriptInfo, keys: tuple[str, ...], actor: str | None) -> None:
    """Set settings back to their declared defaults."""

    async def action(waffle: QuartWaffle) -> int:
        return await waffle.reset(keys, actor=_actor(actor))

    click.echo(f"revision {_run(info, action)}")


@waffle_cli.command("history")
@click.option("--key", help="Only this setting.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--before", "before_id", type=int, help="Only entries older than this entry id.")
@pass_script_info
def history_command(info: ScriptInfo, key: str | None, limit: int, before_id: int | None) -> None:
    """Recorded changes, newest first: entry id, revision, time, actor, key,
    old -> new."""

    async def action(waffle: QuartWaffle) -> None:
        entries = await waffle.history(key=key, before_id=before_id, limit=limit)
        for entry in entries:
            old, new = (
                display_value(waffle.declarations, entry.key, value)
                for value in (entry.old_value, entry.new_value)
            )
            click.echo(
                f"{entry.id}\t{entry.revision}\t{entry.changed_at.isoformat()}\t{entry.actor}\t"
                f"{entry.key}\t{_dump(old)} -> {_dump(new)}"
            )

    _run(info, action)


@waffle_cli.command("export")
@click.argument("output", type=click.File("w"), default="-")
@click.option("--include-secrets", is_flag=True, help="Write secret values too.")
@pass_script_info
def export_command(info: ScriptInfo, output: TextIO, include_secrets: bool) -> None:
    """Write every setting as JSON: {"revision": R, "settings": {...}}."""

    async def action(waffle: QuartWaffle) -> dict[str, Any]:
        snapshot = waffle.snapshot
        settings = {
            key: value
            for key, value in snapshot.values.items()
            if include_secrets or not waffle.declarations[key].secret
        }
        return {"revision": snapshot.revision, "settings": settings}

    json.dump(_run(info, action), output, indent=2, ensure_ascii=False)
    output.write("\n")


@waffle_cli.command("import")
@click.argument("source", type=click.File("r"))
@click.option("--expect-revision", type=int, help="Fail if a key changed after this revision.")
@click.option("--actor", help="Recorded in history (default: cli:<user>).")
@pass_script_info
def import_command(
    info: ScriptInfo, source: TextIO, expect_revision: int | None, actor: str | None
) -> None:
    """Apply a file written by ``export`` (or a plain {key: value} object)
    atomically: all of it, or nothing if any value is invalid."""
    try:
        document = json.load(source)
    except ValueError as error:
        raise click.ClickException(f"{source.name}: not valid JSON: {error}") from None
    values = document.get("settings", document) if isinstance(document, dict) else None
    if not isinstance(values, dict) or not values:
        raise click.ClickException(f"{source.name}: expected a JSON object of settings")

    async def action(waffle: QuartWaffle) -> int:
        return await waffle.update(values, expected_revision=expect_revision, actor=_actor(actor))

    click.echo(f"revision {_run(info, action)}")
