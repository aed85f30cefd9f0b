"""``quart waffle ...``: read and change settings from a shell."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import json
import math
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TextIO, TypeVar

import click
from quart import Quart
from quart.cli import ScriptInfo, pass_script_info
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from .actor import checked_actor, escape_controls
from .errors import ConfigurationError, InvalidValueError, StoreUnavailableError, WaffleError
from .extension import QuartWaffle
from .fleet import Acknowledgement, Fleet, WorkerView
from .kinds import parse_integer
from .limits import TIME_RANGE, in_utc
from .promotion import Plan, apply, plan, read_document
from .redaction import describe_error, mask_credentials
from .rollback import json_diff
from .settings import display_value
from .sync import channel_options, open_notifier

R = TypeVar("R")


class WholeNumber(click.ParamType[int]):
    """A whole number from ``minimum`` to ``maximum``, written as people do:
    ASCII digits (click's own int type also takes ``1_0`` and other scripts'
    digits)."""

    name = "integer"

    def __init__(self, minimum: int = 0, maximum: int = 10**18 - 1) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = value if isinstance(value, int) else parse_integer(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if not self.minimum <= number <= self.maximum:
            self.fail(f"must be from {self.minimum} to {self.maximum}", param, ctx)
        return number


class Seconds(click.FloatRange):
    """A number of seconds from ``min`` to ``max``; click's FloatRange lets
    ``nan`` through (it compares false with both bounds)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return number


# The drivers quart-waffle supports, and the extra that installs each one.
_EXTRAS = {"asyncpg": "postgres", "redis": "redis", "aiosqlite": ""}
_MISSING_TABLE = re.compile(r'no such table: waffle_|relation "waffle_\w*" does not exist')


def _run(
    info: ScriptInfo, action: Callable[[QuartWaffle], Awaitable[R]], *, notify: bool = False
) -> R:
    """Load the app, connect quart-waffle, run ``action``; every error becomes
    one line and exit status 1. With ``notify`` (a write), first make sure the
    workers would hear of it (see `_require_watched`)."""
    try:
        app: Quart = info.load_app()
    except WaffleError as error:
        raise click.ClickException(str(error)) from None
    waffle: QuartWaffle = app.extensions["waffle"]
    if notify:
        _require_watched(waffle)

    async def main() -> R:
        async with app.app_context(), waffle.connected():
            if notify:
                await _require_listened(waffle)
            return await action(waffle)

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        raise  # the reader went away (`| head`): click exits quietly
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


def _require_watched(waffle: QuartWaffle) -> None:
    """Refuse a write that no worker would be told of: this command notifies
    through a watcher file that no worker has created (a worker creates its file
    when it starts watching). That happens when the shell's ``WAFFLE_*``
    variables or the app's instance folder differ from the workers'."""
    config = waffle.config
    unwatched = config is not None and config.watchtype == "file"
    if unwatched and config is not None and not os.path.lexists(config.watcher_file):
        raise click.ClickException(
            f"no worker watches {config.watcher_file} (no worker has created it): run this"
            " command with the workers' WAFFLE_* settings and instance folder, or pass"
            " --no-channel-check if no worker runs yet"
        )


async def _require_listened(waffle: QuartWaffle) -> None:
    """Refuse a write that no worker would be told of on a channel that counts
    its listeners (``redis``: ``PUBSUB NUMSUB``) and has none. A channel that
    cannot tell, or cannot be reached, does not stop the write: the workers'
    periodic checks carry it."""
    config = waffle.config
    notifier = open_notifier(config.watchtype, channel_options(config), waffle.engine)
    try:
        listeners = await notifier.listeners()
    except Exception:
        listeners = None
    finally:
        await notifier.close()
    if listeners == 0:
        raise ConfigurationError(
            f"no worker listens on the {notifier.name} channel {config.redis_channel!r} at"
            f" {notifier.where}: run this command with the workers' WAFFLE_* settings, or pass"
            " --no-channel-check if no worker runs yet"
        )


def _supported(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() in ("sqlite", "postgresql")
    except ArgumentError:
        return True  # not a URL at all: said as such


_no_channel_check = click.option(
    "--no-channel-check",
    is_flag=True,
    help="Write even if no worker seems to watch this command's channel (none runs yet, say).",
)


def _actor(actor: str | None) -> str:
    """``--actor``, or ``cli:<login name>``; ``cli`` when the login name is
    unknown or not a valid actor (an undecodable ``LOGNAME``, say)."""
    if actor:
        return actor
    try:
        return checked_actor(f"cli:{getpass.getuser()}")
    except (OSError, KeyError, InvalidValueError):
        return "cli"


_reason = click.option("--reason", default="", help="Why, recorded in history.")
_actor_option = click.option("--actor", help="Recorded in history (default: cli:<user>).")
_expected_revision = click.option(
    "--expected-revision",
    "--expect-revision",
    "expect_revision",
    type=WholeNumber(),
    help="Fail if a key changed after this revision.",
)


def _assignments(assignments: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as key to the text of its value."""
    raw: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise click.BadParameter(f"{assignment!r} is not KEY=VALUE", param_hint="assignments")
        raw[key] = value
    return raw


def _typed(waffle: QuartWaffle, raw: dict[str, str]) -> dict[str, Any]:
    """Each text of :func:`_assignments` typed by its setting, as in a form."""
    return {key: waffle.setting(key).parse_text(text) for key, text in raw.items()}


class Moment(click.ParamType[datetime]):
    """An ISO 8601 time; without an offset it is UTC."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail("must be an ISO 8601 time, like 2026-11-25T18:00:00+00:00", param, ctx)
        utc = in_utc(moment)
        if utc is None:
            self.fail(TIME_RANGE, param, ctx)
        return utc


def _time(moment: datetime | None) -> str:
    return "unreadable-time" if moment is None else moment.isoformat()


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _OneLineGroup(click.Group):
    """A usage error of a subcommand (a bad option value, a missing file) is
    one line and exit status 1, as every other error of these commands."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise click.ClickException(error.format_message()) from None


@click.group("waffle", cls=_OneLineGroup)
def waffle_cli() -> None:
    """Read and change quart-waffle settings."""


@waffle_cli.command("status")
@click.option(
    "--max-lag",
    type=Seconds(0, 86400),
    help="Seconds a worker may go without a heartbeat, or serve a revision below the"
    " head, before it counts as lagging (default: the fleet's own bounds).",
)
@click.option(
    "--min-workers", type=WholeNumber(0, 10**6), default=0, help="Fewer live workers: exit 3."
)
@click.option("--json", "as_json", is_flag=True, help="Print the fleet as GET /api/fleet does.")
@click.option(
    "--revision",
    type=WholeNumber(),
    help="Instead: wait until every live worker serves this revision (exit 3 if not).",
)
@click.option(
    "--within",
    type=Seconds(0, 3600),
    default=10.0,
    show_default=True,
    help="Seconds --revision waits at most.",
)
@pass_script_info
def status_command(
    info: ScriptInfo,
    max_lag: float | None,
    min_workers: int,
    as_json: bool,
    revision: int | None,
    within: float,
) -> None:
    """The fleet: every worker of every host on this store, what it serves and
    whether it lags (not the supervisor's `quart-waffle workers`). Exit status
    0 when every live worker keeps up, 3 when one lags or fewer than
    --min-workers are live, 1 when the fleet cannot be read. With --revision,
    wait until every live worker serves that revision instead (exit 3 if one
    does not within --within seconds)."""

    if revision is not None:
        _acknowledged(info, revision, within, as_json)
        return

    async def action(waffle: QuartWaffle) -> Fleet:
        return await waffle.fleet()

    fleet = _run(info, action)
    lagging = [view for view in fleet.live if _lags(view, max_lag)]
    if as_json:
        click.echo(json.dumps(fleet.as_dict(), indent=2))
    else:
        _print_fleet(fleet, lagging)
    if lagging or len(fleet.live) < min_workers:
        if len(fleet.live) < min_workers:
            click.echo(f"only {len(fleet.live)} live worker(s), fewer than {min_workers}", err=True)
        raise SystemExit(3)


def _acknowledged(info: ScriptInfo, revision: int, within: float, as_json: bool) -> None:
    """``status --revision R``: wait until every live worker serves R; print
    who applied it (and who has not); exit 3 unless all did."""

    async def action(waffle: QuartWaffle) -> Acknowledgement:
        return await waffle.acknowledged(revision, within=within)

    ack = _run(info, action)
    click.echo(json.dumps(ack.as_dict(), indent=2) if as_json else ack.text)
    if not ack.complete:
        raise SystemExit(3)


def _lags(view: WorkerView, max_lag: float | None) -> bool:
    """Whether a live worker lags: by the fleet's own judgement, or with
    ``max_lag``, by its heartbeat's age, its time behind the head and its channel."""
    if max_lag is None:
        return view.state == "lagging"
    return view.age > max_lag or view.behind > max_lag or not view.record.connected


def _print_fleet(fleet: Fleet, lagging: list[WorkerView]) -> None:
    counts = fleet.as_dict()["counts"]
    click.echo(
        f"fleet: {counts['workers']} worker(s) on {counts['hosts']} host(s), head revision"
        f" {fleet.head}: {len(fleet.live) - len(lagging)} keeping up, {len(lagging)} lagging,"
        f" {counts['gone']} gone"
    )
    for view in fleet.workers:
        record = view.record
        state = "LAGGING" if view in lagging else view.state
        channel = f"{record.channel} {'up' if record.connected else 'DOWN'}"
        why = f"\t{'; '.join(view.reasons)}" if view.reasons else ""
        click.echo(
            f"{escape_controls(record.host)}\tpid {record.pid}\trevision {record.revision}"
            f"\t{state}\t{channel}\theartbeat {view.age:.1f} s ago"
            f"\tversion {escape_controls(record.version) or '-'}{why}"
        )


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
        click.echo(_dump(setting.to_json(value) if reveal else setting.display(value)))

    _run(info, action)


@waffle_cli.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@_expected_revision
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def set_command(
    info: ScriptInfo,
    assignments: tuple[str, ...],
    expect_revision: int | None,
    actor: str | None,
    reason: str,
    no_channel_check: bool,
) -> None:
    """Change one or more settings atomically. Values are typed as in a form:
    true/false for booleans, JSON for lists and objects."""
    raw = _assignments(assignments)

    async def action(waffle: QuartWaffle) -> int:
        values = _typed(waffle, raw)
        return await waffle.update(
            values, expected_revision=expect_revision, actor=_actor(actor), reason=reason
        )

    click.echo(f"revision {_run(info, action, notify=not no_channel_check)}")


@waffle_cli.command("reset")
@click.argument("keys", nargs=-1, required=True)
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def reset_command(
    info: ScriptInfo, keys: tuple[str, ...], actor: str | None, reason: str, no_channel_check: bool
) -> None:
    """Set settings back to their declared defaults."""

    async def action(waffle: QuartWaffle) -> int:
        return await waffle.reset(keys, actor=_actor(actor), reason=reason)

    click.echo(f"revision {_run(info, action, notify=not no_channel_check)}")


@waffle_cli.command("history")
@click.option("--key", help="Only this setting.")
@click.option("--limit", type=WholeNumber(1, 10_000), default=20, show_default=True)
@click.option(
    "--before", "before_id", type=WholeNumber(), help="Only entries older than this entry id."
)
@click.option("--actor", help="Only changes by this actor.")
@click.option("--since", type=Moment(), help="Only changes at or after this time (ISO 8601).")
@click.option("--until", type=Moment(), help="Only changes before this time (ISO 8601).")
@click.option("--revision", type=WholeNumber(), help="Only the changes of this revision.")
@pass_script_info
def history_command(
    info: ScriptInfo,
    key: str | None,
    limit: int,
    before_id: int | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    revision: int | None,
) -> None:
    """Recorded changes of every key, newest first: entry id, revision, time,
    actor, key, old -> new, then the reason and, for JSON objects and
    lists, the changed paths."""

    async def action(waffle: QuartWaffle) -> None:
        entries = await waffle.history(
            key=key,
            before_id=before_id,
            limit=limit,
            actor=actor,
            since=since,
            until=until,
            revision=revision,
        )
        for entry in entries:
            old, new = (
                display_value(waffle.declarations, entry.key, value)
                for value in (entry.old_value, entry.new_value)
            )
            line = (
                f"{entry.id}\t{entry.revision}\t{_time(entry.changed_at)}\t"
                + "\t".join(map(escape_controls, (entry.actor, entry.key)))
                + f"\t{escape_controls(_dump(old))} -> {escape_controls(_dump(new))}"
            )
            if entry.reason:
                line += f"\treason: {escape_controls(entry.reason)}"
            changed = json_diff(old, new)
            if changed:
                line += "\tdiff: " + escape_controls(_dump(changed))
            click.echo(line)

    _run(info, action)


@waffle_cli.command("export")
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--include-secrets", is_flag=True, help="Write secret values too (file mode 0600).")
@pass_script_info
def export_command(info: ScriptInfo, output: str, include_secrets: bool) -> None:
    """Write every setting as JSON: {"revision": R, "settings": {...}}.

    The file is never written through a symbolic link; with secrets it is
    readable by its owner only."""

    async def action(waffle: QuartWaffle) -> dict[str, Any]:
        snapshot = waffle.snapshot
        settings = {
            key: waffle.declarations[key].to_json(value)
            for key, value in snapshot.values.items()
            if include_secrets or not waffle.declarations[key].secret
        }
        return {"revision": snapshot.revision, "settings": settings}

    text = json.dumps(_run(info, action), indent=2, ensure_ascii=False) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        _write_private(output, text) if include_secrets else _write_new(output, text)
    except OSError as error:
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise click.ClickException(f"cannot write {output}: {reason}") from None


def _write_new(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only: into a new file
    of ours (mode 0600, random name, created exclusively in the same folder)
    renamed over ``path``, so an existing file's owner and mode never carry
    over; a symbolic link at ``path`` is refused."""
    if os.path.islink(path):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    fd, temporary = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)), prefix=".waffle-export-"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@waffle_cli.command("import")
@click.argument("source", type=click.File("r"))
@_expected_revision
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def import_command(
    info: ScriptInfo,
    source: TextIO,
    expect_revision: int | None,
    actor: str | None,
    reason: str,
    no_channel_check: bool,
) -> None:
    """Apply a file written by ``export`` (or a plain {key: value} object)
    atomically: all of it, or nothing if any value is invalid."""
    try:
        document = json.load(source)
    except ValueError as error:
        raise click.ClickException(f"{source.name}: not valid JSON: {error}") from None
    except RecursionError:
        raise click.ClickException(f"{source.name}: nested too deeply") from None
    values = document.get("settings", document) if isinstance(document, dict) else None
    if not isinstance(values, dict) or not values:
        raise click.ClickException(f"{source.name}: expected a JSON object of settings")

    async def action(waffle: QuartWaffle) -> int:
        return await waffle.update(
            values, expected_revision=expect_revision, actor=_actor(actor), reason=reason
        )

    click.echo(f"revision {_run(info, action, notify=not no_channel_check)}")


@waffle_cli.command("revert")
@click.argument("revision", type=WholeNumber(1))
@click.option("--force", is_flag=True, help="Revert even keys changed after REVISION.")
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def revert_command(
    info: ScriptInfo,
    revision: int,
    force: bool,
    actor: str | None,
    reason: str,
    no_channel_check: bool,
) -> None:
    """Undo what REVISION changed, as a new revision; refused when one of
    its keys changed after it, unless --force."""

    async def action(waffle: QuartWaffle) -> tuple[int, bool]:
        return await _rolled_back(
            waffle,
            lambda: waffle.revert(revision, force=force, actor=_actor(actor), reason=reason),
        )

    _echo_rolled_back(*_run(info, action, notify=not no_channel_check))


@waffle_cli.command("restore")
@click.argument("revision", type=WholeNumber())
@_expected_revision
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def restore_command(
    info: ScriptInfo,
    revision: int,
    expect_revision: int | None,
    actor: str | None,
    reason: str,
    no_channel_check: bool,
) -> None:
    """Put every setting back as it was at REVISION (0: every default), as
    a new revision."""

    async def action(waffle: QuartWaffle) -> tuple[int, bool]:
        return await _rolled_back(
            waffle,
            lambda: waffle.restore(
                revision, expected_revision=expect_revision, actor=_actor(actor), reason=reason
            ),
        )

    _echo_rolled_back(*_run(info, action, notify=not no_channel_check))


async def _rolled_back(
    waffle: QuartWaffle, write: Callable[[], Awaitable[int]]
) -> tuple[int, bool]:
    """Run a revert or restore: the revision it returns, and whether it wrote
    one (else every key already had the value it would put back)."""
    await waffle.refresh()
    before = waffle.revision
    revision = await write()
    return revision, revision > before


def _echo_rolled_back(revision: int, changed: bool) -> None:
    if not changed:
        click.echo("nothing to change")
    click.echo(f"revision {revision}")


def _read_settings(source: TextIO) -> dict[str, Any]:
    try:
        return read_document(source.read())
    except (InvalidValueError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{source.name}: {error}") from None


def _print_plan(planned: Plan) -> None:
    click.echo(f"base revision {planned.base_revision}")
    for change in planned.changes:
        old, new = (escape_controls(_dump(value)) for value in (change.old, change.new))
        click.echo(f"~ {escape_controls(change.key)}\t{old} -> {new}")
    click.echo(f"{len(planned.changes)} to change, {len(planned.unchanged)} unchanged")


@waffle_cli.command("diff")
@click.argument("source", type=click.File("r"))
@pass_script_info
def diff_command(info: ScriptInfo, source: TextIO) -> None:
    """What applying SOURCE (a file written by export) would change: one
    line per key, old -> new; stores nothing."""
    values = _read_settings(source)

    async def action(waffle: QuartWaffle) -> Plan:
        return await plan(waffle, values)

    _print_plan(_run(info, action))


@waffle_cli.command("apply")
@click.argument("source", type=click.File("r"))
@click.option("--dry-run", is_flag=True, help="Print the plan; store nothing.")
@click.option(
    "--expected-revision",
    "--expect-revision",
    type=WholeNumber(),
    help="Fail if a key to change changed after this revision.",
)
@_actor_option
@_reason
@_no_channel_check
@pass_script_info
def apply_command(
    info: ScriptInfo,
    source: TextIO,
    dry_run: bool,
    expected_revision: int | None,
    actor: str | None,
    reason: str,
    no_channel_check: bool,
) -> None:
    """Apply SOURCE (a file written by export) as one revision, or nothing
    when any value is invalid or a key changed after --expected-revision;
    prints the plan, then the new revision."""
    values = _read_settings(source)

    async def action(waffle: QuartWaffle) -> Plan:
        return await apply(
            waffle,
            values,
            dry_run=dry_run,
            expected_revision=expected_revision,
            actor=_actor(actor),
            reason=reason,
        )

    planned = _run(info, action, notify=not (dry_run or no_channel_check))
    _print_plan(planned)
    if dry_run:
        click.echo("dry run: nothing stored")
    elif planned.applied_revision is None:
        click.echo("nothing to change")
    else:
        click.echo(f"revision {planned.applied_revision}")


# registers schedule, scheduled and cancel on waffle_cli (it imports this module)
from . import schedule_cli  # noqa: E402, F401
