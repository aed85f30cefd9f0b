"""``<prefix>/api/schedule``: list, add and cancel scheduled and temporary
changes (docs/schedule.md). Routes of the API blueprint, so the same
authentication and JSON error bodies apply."""

from __future__ import annotations

from typing import Any

from quart import Response, g, jsonify

from ..schedule import NotCancellableError
from .api import api, read_json
from .context import current_waffle
from .errors import AdminError
from .inputs import refuse_mask

_MEMBERS = {"values": dict, "at": str, "until": (str, type(None)), "reason": str, "force": bool}


@api.get("/api/schedule")
async def list_schedule() -> Response:
    """The newest 100 scheduled changes, newest first."""
    entries = await current_waffle().scheduled()
    return jsonify({"schedule": [entry.as_dict() for entry in entries]})


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
    try:
        entry = await current_waffle().cancel_scheduled(entry_id, actor=g.waffle_admin_actor)
    except NotCancellableError as error:
        if error.state is None:
            raise AdminError(
                404, "not_found", str(error), {"id": "no such scheduled change"}
            ) from None
        reason = {"id": f"it is {error.state}"}
        raise AdminError(409, "not_cancellable", str(error), reason) from None
    return jsonify(entry.as_dict())
