"""``<prefix>/schedule`` on the admin page: every scheduled change with a
cancel button, and a small form to schedule one (docs/schedule.md).
Routes of the page blueprint: the same login, CSRF check and permissions."""

from __future__ import annotations

from quart import Response, redirect, request

from ..errors import InvalidValueError
from ..schedule import ACTIVE, NotCancellableError, parse_time
from .context import admin_prefix, current_waffle
from .errors import AdminError
from .inputs import natural_number, refuse_mask
from .page import _render, _signed_in, _signed_in_form, message_page, page
from .permissions import check_keys, readable

MAX_FORM_KEYS = 20
"""Lines of ``KEY=VALUE`` one scheduling form takes."""


async def _schedule_page(status: int = 200, problem: str | None = None) -> Response:
    signed_in = await _signed_in("Log in again.")
    if isinstance(signed_in, Response):
        return signed_in
    session, _ = signed_in
    waffle = current_waffle()
    entries = await waffle.scheduled()
    shown = await readable(waffle, {key for entry in entries for key in entry.values})
    return await _render(
        "schedule.html",
        status,
        session,
        entries=[entry for entry in entries if shown.issuperset(entry.values)],
        active=ACTIVE,
        keys=sorted(await readable(waffle, waffle.declarations)),
        problem=problem,
        added=natural_number(request.args.get("added")),
        signed_in=True,
    )


@page.get("/schedule")
async def schedule_list() -> Response:
    """Every scheduled change, newest first, with a cancel button on the
    active ones, and the form to schedule a change."""
    return await _schedule_page()


@page.post("/schedule")
async def schedule_add() -> Response:
    """Schedule the form's ``values`` (``KEY=VALUE`` lines, typed as in the
    settings form) at ``at``, until ``until``; 422 with the page saying why."""
    posted = await _signed_in_form("Log in again to schedule.")
    if isinstance(posted, Response):
        return posted
    _, actor, form = posted
    waffle = current_waffle()
    lines = [line.strip() for line in form.get("values", "").splitlines() if line.strip()]
    try:
        if len(lines) > MAX_FORM_KEYS:
            raise InvalidValueError({"values": f"at most {MAX_FORM_KEYS} lines"})
        values = {}
        for line in lines:
            key, sep, text = line.partition("=")
            if not sep:
                raise InvalidValueError({"values": f"{line[:60]!r} is not KEY=VALUE"})
            setting = waffle.setting(key.strip())
            values[setting.key] = setting.parse_text(text.strip())
            refuse_mask(setting, values[setting.key])
        await check_keys(waffle, "schedule", values)
        entry = await waffle.schedule(
            values,
            at=parse_time(form.get("at", ""), "at"),
            until=parse_time(until, "until") if (until := form.get("until")) else None,
            reason=form.get("reason", ""),
            actor=actor,
            force=form.get("force") == "1",
        )
    except InvalidValueError as error:
        detail = "; ".join(f"{key or 'values'}: {why}" for key, why in error.errors.items())
        return await _schedule_page(422, f"Nothing was scheduled: {detail}")
    except LookupError as error:  # an unknown key
        return await _schedule_page(422, f"Nothing was scheduled: {error}")
    return _see_schedule(f"?added={entry.id}")


@page.post("/schedule/cancel")
async def schedule_cancel() -> Response:
    """Cancel the form's ``id``: its change if pending, else its end."""
    posted = await _signed_in_form("Log in again to cancel.")
    if isinstance(posted, Response):
        return posted
    _, actor, form = posted
    waffle = current_waffle()
    entry_id = natural_number(form.get("id"))
    if entry_id is None:
        raise AdminError(422, "invalid_form", "The form names no scheduled change: reload.")
    found = [entry for entry in await waffle.scheduled(limit=10_000) if entry.id == entry_id]
    if found:
        await check_keys(waffle, "schedule", found[0].values)
    try:
        await waffle.cancel_scheduled(entry_id, actor=actor)
    except NotCancellableError as error:
        return await message_page("Nothing was cancelled", str(error), 409)
    return _see_schedule()


def _see_schedule(query: str = "") -> Response:
    response = redirect(f"{admin_prefix()}/schedule{query}", 303)
    assert isinstance(response, Response)
    return response
