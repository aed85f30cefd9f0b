"""The JSON API: read, change and reset settings, read history and health.

Every write goes through :meth:`QuartWaffle.update`, so it returns only
after the new revision is committed, applied here and announced to the
other workers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, g, jsonify, request

from ..errors import ConflictError, InvalidValueError
from ..fleet.member import DEFAULT_WAIT, MAX_API_WAIT
from ..limits import MAX_HISTORY_LIMIT, TIME_RANGE, in_utc
from ..promotion import Plan, apply, export, settings_of
from ..rollback import json_diff
from ..settings import Setting, display_value
from .auth import authenticate
from .context import admin_prefix, current_waffle
from .errors import AdminError, conflict, invalid, register_error_handlers, unknown_setting
from .inputs import natural_number, read_body, refuse_mask
from .openapi import openapi_document
from .permissions import check_apply, check_keys, check_rollback, readable, refuse_read_only

if TYPE_CHECKING:
    from ..extension import QuartWaffle
    from ..store import HistoryEntry

_JSON_TYPES = ("application/json",)

api = Blueprint("waffle_api", __name__)
register_error_handlers(api)


@api.before_request
async def _authenticate() -> None:
    g.waffle_admin_actor = await authenticate(current_waffle(), request, page=False)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        refuse_read_only()


def setting_item(setting: Setting[Any], waffle: QuartWaffle) -> dict[str, Any]:
    """One setting as the API shows it: declaration, display value, revision,
    whether it serves its declared default, and whether a change to it awaits a
    restart."""
    snapshot = waffle.snapshot
    return {
        **setting.describe(),
        "value": setting.display(snapshot.values[setting.key]),
        "is_default": snapshot.is_default(setting.key),
        "restart_pending": setting.key in waffle.pending_restart,
        "revision": snapshot.revisions.get(setting.key, 0),
    }


def _with_etag(body: Mapping[str, Any], revision: int) -> Response:
    """``body`` as JSON with ``revision`` as ETag; after a write that waited,
    with its ``acknowledgement`` (see :func:`_write`)."""
    acknowledgement = g.get("waffle_acknowledgement")
    if acknowledgement is not None:
        body = {**body, "acknowledgement": acknowledgement.as_dict()}
    response = jsonify(body)
    response.set_etag(str(revision))
    return response


def expected_revision() -> int | None:
    """The revision in ``If-Match``; None when absent or ``*``.

    A value that is not one ETag of this API (a number in quotes) is a
    precondition that can never hold: 412.
    """
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    revision = natural_number(text)
    if revision is None:
        raise AdminError(
            412,
            "invalid_if_match",
            'If-Match must be one ETag of this API, like "42"; nothing was stored.',
            {"If-Match": "not an ETag of this API"},
        )
    return revision


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json() -> Any:
    """The request's JSON body: 415 unless JSON, 413 over ``MAX_BODY_BYTES`` (checked
    before reading, then while reading), 400 unless well-formed."""
    if request.mimetype not in _JSON_TYPES:
        raise AdminError(
            415,
            "unsupported_media_type",
            "Send the body as JSON with 'Content-Type: application/json'.",
            {"Content-Type": f"must be application/json, got {request.mimetype or 'none'!r}"},
        )
    data = await read_body()
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "not valid JSON"
        raise AdminError(
            400, "malformed_json", "The body is not valid JSON.", {"body": reason}
        ) from None


def _object_with(body: Any, member: str) -> Any:
    """``body[member]`` of a JSON object with exactly that member (and an
    optional ``reason``), or 422."""
    if not isinstance(body, dict):
        raise AdminError(
            422,
            "invalid_body",
            f'The body must be a JSON object like {{"{member}": ...}}.',
            {"body": f"must be an object, got {type(body).__name__}"},
        )
    fields = {name: "unexpected member" for name in body if name not in (member, "reason")}
    g.waffle_reason = body.get("reason", "")  # checked by the write, which names it
    if member not in body:
        fields[member] = "required"
    if fields:
        raise AdminError(422, "invalid_body", "The body has the wrong members.", fields)
    return body[member]


async def _write(
    waffle: QuartWaffle,
    values: Mapping[str, Any] | list[str],
    expected: int | None,
) -> int:
    actor: str = g.waffle_admin_actor
    within = wait_seconds(request.args)  # refused before anything is stored
    await check_keys(waffle, "reset" if isinstance(values, list) else "write", values)
    try:
        if isinstance(values, list):
            written = await waffle.reset(
                values, expected_revision=expected, actor=actor, reason=_reason(), wait=within
            )
        else:
            await refuse_stale_secrets(waffle, values, expected)
            for key, value in values.items():
                if key in waffle.declarations:
                    refuse_mask(waffle.declarations[key], value)
            # with wait, the change's message asks every worker to report at once
            written = await waffle.update(
                values, expected_revision=expected, actor=actor, reason=_reason(), wait=within
            )
        if isinstance(written, int):
            return written
        g.waffle_acknowledgement = written
        return written.revision
    except ConflictError as error:
        current = {
            key: display_value(waffle.declarations, key, value)
            for key, value in error.current.items()
        }
        raise conflict(error, current) from None
    except InvalidValueError as error:
        raise invalid(error) from None


def wait_seconds(args: Mapping[str, str]) -> float | None:
    """The query's ``wait`` (``true``/``1`` or ``false``/``0``) and ``timeout``
    (seconds, 0 to :data:`MAX_API_WAIT`, default 10) as the seconds a write
    waits for the fleet, None for no wait; 422 naming the parameter otherwise."""
    wait = args.get("wait", "").strip().lower()
    if wait not in ("", "0", "false", "1", "true"):
        raise AdminError(
            422, "invalid_query", "wait must be true or false.", {"wait": "must be true or false"}
        )
    raw = args.get("timeout")
    timeout = DEFAULT_WAIT
    if raw is not None:
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not 0 <= timeout <= MAX_API_WAIT:
            raise AdminError(
                422,
                "invalid_query",
                "The query parameter timeout is out of range.",
                {"timeout": f"must be a number of seconds from 0 to {MAX_API_WAIT:g}"},
            )
    return timeout if wait in ("1", "true") else None


async def refuse_stale_secrets(
    waffle: QuartWaffle, values: Mapping[str, Any], expected: int | None
) -> None:
    """Raise :class:`ConflictError` for a stale ``If-Match`` on a write of a
    secret before its values are validated: otherwise 409 for a value among
    the secret's choices and 422 for one outside them would tell them apart
    without changing anything."""
    declarations = waffle.declarations
    if expected is None or not any(
        key in declarations and declarations[key].secret for key in values
    ):
        return
    await waffle.refresh()
    snapshot = waffle.snapshot
    stale = {
        key: snapshot.revisions[key]
        for key in values
        if key in declarations and snapshot.revisions.get(key, 0) > expected
    }
    if stale:
        raise ConflictError(expected, {key: snapshot.values[key] for key in stale}, stale)


async def apply_document(
    waffle: QuartWaffle,
    values: dict[str, Any],
    expected: int | None,
    *,
    dry_run: bool,
    actor: str,
    reason: str,
) -> Plan:
    """Apply an export's settings as one revision, or with ``dry_run`` only
    plan it, for the API and the page alike: a stale secret, a mask sent
    back as a value and a key the caller may not change are refused first."""
    await refuse_stale_secrets(waffle, values, expected)
    for key, value in values.items():
        if key in waffle.declarations:
            refuse_mask(waffle.declarations[key], value)
    checked = await check_apply(waffle, values, expected)  # a plan shows what it checks
    return await apply(
        waffle,
        values,
        dry_run=dry_run,
        expected_revision=expected if dry_run else checked,
        actor=actor,
        reason=reason,
        blind_secrets=True,
    )


def _reason() -> Any:
    return g.get("waffle_reason", "")


async def _options(**allowed: type) -> dict[str, Any]:
    """The members of an optional JSON object body (no body: none), each of
    the type ``allowed`` names; 422 naming a member otherwise."""
    if request.mimetype not in _JSON_TYPES and not request.content_length:
        return {}
    body = await read_json()
    if body is None:  # a JSON null says "no options", as no body does
        return {}
    if not isinstance(body, dict):
        raise AdminError(
            422, "invalid_body", "The body must be a JSON object.", {"body": "must be an object"}
        )
    fields = {
        name: "unexpected member" if name not in allowed else f"must be {allowed[name].__name__}"
        for name, value in body.items()
        if name not in allowed or not isinstance(value, allowed[name])
    }
    if fields:
        raise AdminError(422, "invalid_body", "The body has the wrong members.", fields)
    g.waffle_reason = body.get("reason", "")
    return body


def _declared(key: str) -> Setting[Any]:
    setting = current_waffle().declarations.get(key)
    if setting is None:
        raise unknown_setting(key)
    return setting


@api.get("/api/settings")
async def list_settings() -> Response:
    """All settings and this worker's revision; ETag is that revision."""
    waffle = current_waffle()
    revision = waffle.revision
    shown = await readable(waffle, waffle.declarations)
    items = [
        setting_item(setting, waffle)
        for key, setting in waffle.declarations.items()
        if key in shown
    ]
    return _with_etag({"revision": revision, "settings": items}, revision)


@api.patch("/api/settings")
async def patch_settings() -> Response:
    """Change several settings atomically; If-Match is the list's revision."""
    waffle = current_waffle()
    expected = expected_revision()
    values = _object_with(await read_json(), "values")
    if not isinstance(values, dict) or not values:
        raise AdminError(
            422,
            "invalid_body",
            "values must be a non-empty object.",
            {"values": "must be a non-empty object"},
        )
    revision = await _write(waffle, values, expected)
    items = [setting_item(waffle.declarations[key], waffle) for key in values]
    return _with_etag({"revision": revision, "settings": items}, revision)


@api.get("/api/settings/<key>")
async def get_setting(key: str) -> Response:
    """One setting; ETag is the revision that last changed it."""
    waffle = current_waffle()
    setting = _declared(key)
    await check_keys(waffle, "read", [key])
    item = setting_item(setting, waffle)
    return _with_etag({"revision": waffle.revision, "setting": item}, item["revision"])


@api.put("/api/settings/<key>")
async def put_setting(key: str) -> Response:
    """Change one setting; If-Match is the ETag from GET of that setting."""
    waffle = current_waffle()
    _declared(key)
    expected = expected_revision()
    value = _object_with(await read_json(), "value")
    revision = await _write(waffle, {key: value}, expected)
    item = setting_item(waffle.declarations[key], waffle)
    return _with_etag({"revision": revision, "setting": item}, item["revision"])


@api.delete("/api/settings/<key>")
@api.post("/api/settings/<key>/reset")
async def reset_setting(key: str) -> Response:
    """Set one setting back to its declared default."""
    waffle = current_waffle()
    _declared(key)
    expected = expected_revision()
    await _options(reason=str)
    revision = await _write(waffle, [key], expected)
    item = setting_item(waffle.declarations[key], waffle)
    return _with_etag({"revision": revision, "setting": item}, item["revision"])


def _query_int(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    number = natural_number(raw)
    if number is None or not low <= number <= high:
        raise AdminError(
            422,
            "invalid_query",
            f"The query parameter {name} is out of range.",
            {name: f"must be an integer from {low} to {high}"},
        )
    return number


@api.get("/api/history")
async def history() -> Response:
    """Changes newest first; page with ``before`` = the previous page's ``next_before``
    (an entry id: one revision may hold several entries, so pages cut by id)."""
    waffle = current_waffle()
    key = request.args.get("key") or None
    if key is not None:
        _declared(key)
        await check_keys(waffle, "read", [key])
    before = _query_int("before", None, 0, 10**18)
    limit = _query_int("limit", 50, 1, MAX_HISTORY_LIMIT)
    assert limit is not None
    entries = await waffle.history(
        key=key,
        before_id=before,
        limit=limit,
        actor=request.args.get("actor") or None,
        since=query_time("since"),
        until=query_time("until"),
        revision=_query_int("revision", None, 0, 10**18),
    )
    shown = await readable(waffle, {entry.key for entry in entries})
    body = {
        "entries": [history_item(waffle, entry) for entry in entries if entry.key in shown],
        "next_before": entries[-1].id if len(entries) == limit else None,
    }
    return jsonify(body)


def history_item(waffle: QuartWaffle, entry: HistoryEntry) -> dict[str, Any]:
    """One history entry, masked when its setting is secret or no longer declared."""

    def shown(value: Any) -> Any:
        return None if value is None else display_value(waffle.declarations, entry.key, value)

    return {
        "id": entry.id,
        "revision": entry.revision,
        "key": entry.key,
        "old_value": shown(entry.old_value),
        "new_value": shown(entry.new_value),
        "changed_at": None if entry.changed_at is None else entry.changed_at.isoformat(),
        "actor": entry.actor,
        "reason": entry.reason,
        "diff": json_diff(shown(entry.old_value), shown(entry.new_value)),
    }


def query_time(name: str) -> datetime | None:
    """The query's ISO 8601 time ``name`` (UTC without an offset), or 422."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise AdminError(
            422,
            "invalid_query",
            f"The query parameter {name} is not a time.",
            {name: "must be an ISO 8601 time, like 2026-11-25T18:00:00+00:00"},
        ) from None
    utc = in_utc(moment)
    if utc is None:
        raise AdminError(
            422, "invalid_query", f"The query parameter {name} is out of range.", {name: TIME_RANGE}
        )
    return utc


async def _rollback_write(write: Callable[[], Awaitable[int]]) -> Response:
    waffle = current_waffle()
    try:
        revision = await write()
    except ConflictError as error:
        current = {
            key: display_value(waffle.declarations, key, value)
            for key, value in error.current.items()
        }
        raise conflict(error, current) from None
    return _with_etag({"revision": revision}, revision)


@api.post("/api/revisions/<int:revision>/revert")
async def revert(revision: int) -> Response:
    """Undo one revision as a new one; 409 naming the keys changed since,
    unless ``{"force": true}``."""
    options = await _options(force=bool, reason=str)
    waffle, actor = current_waffle(), g.waffle_admin_actor
    force = bool(options.get("force", False))
    await check_rollback(waffle, "revert", revision)
    return await _rollback_write(
        lambda: waffle.revert(revision, force=force, actor=actor, reason=_reason())
    )


@api.post("/api/revisions/<int:revision>/restore")
async def restore(revision: int) -> Response:
    """Put every setting back as it was at a revision, as a new one;
    If-Match: 409 when a key to change was changed after it."""
    expected = expected_revision()
    await _options(reason=str)
    waffle, actor = current_waffle(), g.waffle_admin_actor
    seen = await check_rollback(waffle, "restore", revision)
    expected = seen if expected is None else expected
    return await _rollback_write(
        lambda: waffle.restore(revision, expected_revision=expected, actor=actor, reason=_reason())
    )


@api.get("/api/export")
async def export_settings() -> Response:
    """Every setting but the secrets, as ``quart waffle export`` writes them."""
    waffle = current_waffle()
    document = export(waffle)
    shown = await readable(waffle, document["settings"])
    document["settings"] = {k: v for k, v in document["settings"].items() if k in shown}
    return _with_etag(document, waffle.revision)


@api.post("/api/apply")
async def apply_settings() -> Response:
    """Apply an export's settings as one revision, or with ``dry_run`` only
    plan it; If-Match: 409 when a key to change was changed after it."""
    expected = expected_revision()
    options = await _options(settings=dict, dry_run=bool, reason=str)
    waffle, actor = current_waffle(), g.waffle_admin_actor
    try:
        values = settings_of(options.get("settings"), "settings")
        planned = await apply_document(
            waffle,
            values,
            expected,
            dry_run=bool(options.get("dry_run", False)),
            actor=actor,
            reason=_reason(),
        )
    except ConflictError as error:
        current = {
            key: display_value(waffle.declarations, key, value)
            for key, value in error.current.items()
        }
        raise conflict(error, current) from None
    document = planned.as_dict()
    shown = await readable(waffle, planned.unchanged)  # "unchanged" tells a value
    document["unchanged"] = [key for key in planned.unchanged if key in shown]
    return _with_etag(document, planned.applied_revision or waffle.revision)


@api.get("/api/health")
async def health() -> Response:
    """This worker's sync state and pid."""
    waffle = current_waffle()
    return jsonify({**waffle.health().as_dict(), "pid": os.getpid(), "revision": waffle.revision})


@api.get("/api/fleet")
async def fleet() -> Response:
    """Every worker of every host on this store: what it serves, its state
    (``ok``, ``lagging``, ``gone``) and why; see docs/fleet.md."""
    return jsonify((await current_waffle().fleet()).as_dict())


@api.get("/openapi.json")
async def openapi() -> Response:
    """The OpenAPI 3.1 document of this API, built from the declarations."""
    return jsonify(openapi_document(current_waffle().declarations, admin_prefix()))
