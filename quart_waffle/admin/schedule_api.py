"""``<prefix>/api/schedule``: list, add and cancel scheduled and temporary
changes (docs/schedule.md). Routes of the API blueprint, so the same
authentication and JSON error bodies apply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, g, jsonify

from ..limits import MAX_ID
from ..schedule import NotCancellableError
from .api import api, read_json
from .context import current_waffle
from .errors import AdminError
from .inputs import refuse_mask
from .permissions import check_keys, has_key_rules, readable

if TYPE_CHECKING:
    from ..extension import QuartWaffle

_CANCEL_SCAN = 10_000
_MEMBERS = {"values": dict, "at": str, "until": (str, type(None)), "reason": str, "force": bool}


@api.get("/api/schedule")
async def list_schedule() -> Response:
    """The newest 100 scheduled changes, newest first."""
    waffle = current_waffle()
    entries = await waffle.scheduled()
    shown = await readable(waffle, {key for entry in entries for key in entry.values})
    listed = [entry.as_dict() for entry in entries if shown.issuperset(entry.values)]
    return jsonify({"schedule": listed})


@api.post("/api/schedule")
async def add_schedule() -> Response:
    """Schedule ``values`` at ``at`` (and put them back at ``until``); 201
    with the entry, 422 naming each bad member or key, nothing stored."""
    body = await read_json()
    if not isinstance(body, dict):
        raise AdminError(
            422, "invalid_body", "The body must be a JSON object.", {"body": "must be an object"}
        )
    fields: dict[str, str] = {}
    for name, value in body.items():
        allowed: Any = _MEMBERS.get(name)
        if allowed is None:
            fields[name] = "unexpected member"
        elif not isinstance(value, allowed) or (allowed is dict and not value):
            fields[name] = "must be a non-empty object" if allowed is dict else "has the wrong type"
    for name in ("values", "at"):
        if name not in body:
            fields[name] = "required"
    if fields:
        raise AdminError(422, "invalid_body", "The body has the wrong members.", fields)
    waffle = current_waffle()
    values: dict[str, Any] = body["values"]
    for key, value in values.items():
        if key in waffle.declarations:
            refuse_mask(waffle.declarations[key], value)
    await check_keys(waffle, "schedule", values)
    entry = await waffle.schedule(  # InvalidValueError: 422 naming the key or member
        values,
        at=body["at"],
        until=body.get("until"),
        reason=body.get("reason", ""),
        actor=g.waffle_admin_actor,
        force=body.get("force", False),
    )
    response = jsonify(entry.as_dict())
    response.status_code = 201
    return response


@api.delete("/api/schedule/<int:entry_id>")
async def cancel_schedule(entry_id: int) -> Response:
    """Cancel a pending change, or the end of an applied temporary one;
    404 when there is no such entry, 409 when it has no step left."""
    if entry_id > MAX_ID:  # the route takes any digits; the database holds no more
        raise AdminError(
            422,
            "invalid_id",
            "No scheduled change has that id.",
            {"id": f"must be at most {MAX_ID}"},
        )
    waffle = current_waffle()
    if has_key_rules(waffle):
        await _check_cancel(waffle, entry_id)
    try:
        entry = await waffle.cancel_scheduled(entry_id, actor=g.waffle_admin_actor)
    except NotCancellableError as error:
        if error.state is None:
            raise AdminError(
                404, "not_found", str(error), {"id": "no such scheduled change"}
            ) from None
        reason = {"id": f"it is {error.state}"}
        raise AdminError(409, "not_cancellable", str(error), reason) from None
    return jsonify(entry.as_dict())


async def _check_cancel(waffle: QuartWaffle, entry_id: int) -> None:
    """403 naming the keys of ``entry_id`` this request may not schedule."""
    for entry in await waffle.scheduled(limit=_CANCEL_SCAN):
        if entry.id == entry_id:
            await check_keys(waffle, "schedule", entry.values)
            return
    raise AdminError(
        403,
        "forbidden_keys",
        f"Scheduled change {entry_id} is not among the newest {_CANCEL_SCAN}, so its keys"
        " cannot be checked; nothing was cancelled.",
        {"id": "its keys could not be checked"},
    )
