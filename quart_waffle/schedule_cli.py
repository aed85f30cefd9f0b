"""``quart waffle schedule``, ``scheduled`` and ``cancel``: scheduled and
temporary changes from a shell (docs/schedule.md)."""

from __future__ import annotations

import json

import click
from quart.cli import ScriptInfo, pass_script_info

from .actor import escape_controls
from .cli import WholeNumber, _actor, _actor_option, _assignments, _reason, _run, _typed, waffle_cli
from .extension import QuartWaffle
from .schedule import ScheduledChange, parse_time


@waffle_cli.command("schedule")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--at", "at", required=True, help="When, ISO 8601 with its offset.")
@click.option("--until", "until", help="Put back what was there at this time.")
@click.option("--force", is_flag=True, help="Put back even over a change made meanwhile.")
@_actor_option
@_reason
@pass_script_info
def schedule_command(
    info: ScriptInfo,
    assignments: tuple[str, ...],
    at: str,
    until: str | None,
    force: bool,
    actor: str | None,
    reason: str,
) -> None:
    """Change settings at a time (--at), and with --until put back what was
    there before at another, unless a key changed meanwhile (--force: even
    then). Values are typed as for `set`."""
    raw = _assignments(assignments)

    async def action(waffle: QuartWaffle) -> ScheduledChange:
        values = _typed(waffle, raw)
        return await waffle.schedule(
            values,
            at=parse_time(at, "at"),
            until=None if until is None else parse_time(until, "until"),
            reason=reason,
            actor=_actor(actor),
            force=force,
        )

    click.echo(_line(_run(info, action)))


@waffle_cli.command("scheduled")
@click.option("--json", "as_json", is_flag=True, help="Print as GET /api/schedule does.")
@pass_script_info
def scheduled_command(info: ScriptInfo, as_json: bool) -> None:
    """The scheduled changes, newest first: pending, applied (awaiting their
    end) and finished ones with what became of them."""

    async def action(waffle: QuartWaffle) -> list[ScheduledChange]:
        return await waffle.scheduled()

    entries = _run(info, action)
    if as_json:
        click.echo(json.dumps({"schedule": [entry.as_dict() for entry in entries]}, indent=2))
        return
    for entry in entries:
        click.echo(_line(entry))


@waffle_cli.command("cancel")
@click.argument("entry_id", type=WholeNumber(1), metavar="ID")
@click.option("--actor", help="Recorded as who cancelled (default: cli:<user>).")
@pass_script_info
def cancel_command(info: ScriptInfo, entry_id: int, actor: str | None) -> None:
    """Cancel scheduled change ID: its change if pending, else its end (the
    value then stays)."""

    async def action(waffle: QuartWaffle) -> ScheduledChange:
        return await waffle.cancel_scheduled(entry_id, actor=_actor(actor))

    click.echo(_line(_run(info, action)))


def _line(entry: ScheduledChange) -> str:
    """One tab-separated line; recorded text has its control characters escaped."""
    values = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in entry.values.items()
    )
    until = f" until {entry.until.isoformat()}" if entry.until else ""
    parts = [str(entry.id), entry.state, f"at {entry.at.isoformat()}{until}", values]
    parts += [f"by {entry.actor}"] if entry.actor else []
    parts += [f"({entry.reason})"] if entry.reason else []
    parts += [entry.detail] if entry.detail else []
    return "\t".join(escape_controls(part) for part in parts)
