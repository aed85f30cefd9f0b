"""The admin web page: server-rendered, grouped settings, review before save.

Login turns the admin token into a signed session cookie (the app's
``SECRET_KEY`` signs it); an ``authorize`` callback logs people in by the
app's own means. Every form carries the session's CSRF token. Secrets are
shown masked with an empty input that means "unchanged".
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Literal

from quart import Blueprint, Response, jsonify, redirect, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from ..errors import ConflictError, InvalidValueError, StoreUnavailableError
from ..promotion import Plan, apply, export, read_document
from ..schedule import ACTIVE
from .api import apply_document, history_item, query_time, refuse_stale_secrets
from .auth import NOT_CONFIGURED_MESSAGE, authenticate, credentials, is_configured, token_login
from .context import admin_prefix, current_waffle
from .cookies import (
    PLAIN_HTTP_MESSAGE,
    PageSession,
    clear_session,
    cookie_can_be_kept,
    fingerprint,
    load_session,
    save_session,
    secret_key,
)
from .errors import AdminError, log_unavailable
from .fleet_panel import PAGE_WAIT, acknowledgement_query, fleet_view, saved_notice
from .forms import edited_texts, grouped_fields, parsed_changes, submitted
from .inputs import natural_number, read_form
from .origin import check_same_origin, csrf_matches
from .page_filter import PageFilter, group_names
from .permissions import (
    Operation,
    allowed_keys,
    check_apply,
    check_keys,
    check_rollback,
    current_access,
    readable,
    refuse_read_only,
)
from .sessions import page_sessions
from .static_files import static_file

page = Blueprint("waffle_page", __name__, template_folder="templates")

HISTORY_PAGE_SIZE = 50
NO_SECRET_KEY_MESSAGE = (
    "The admin page needs the app's SECRET_KEY to sign its session cookie and CSRF"
    " tokens: set app.secret_key (or SECRET_KEY in the config) to a long random value."
    " The JSON API works without it, with 'Authorization: Bearer <WAFFLE_ADMIN_TOKEN>'."
)
CONTROLS: dict[str, tuple[Operation, ...]] = {
    "settings.html": ("write", "reset"),
    "history.html": ("revert", "restore"),
    "promote.html": ("apply",),
    "schedule.html": ("schedule",),
}
"""The operations each page has buttons for: a button is drawn (enabled) only
for the keys the user may do it to; the handlers check every key all the same."""


async def _render(
    template: str,
    status: int = 200,
    session: PageSession | None = None,
    *,
    signed_in: bool = False,
    **context: Any,
) -> Response:
    """Render ``template``; only a ``signed_in`` page names this worker (pid,
    revision): a visitor who has not logged in learns nothing of it."""
    worker = (os.getpid(), current_waffle().revision) if signed_in else None
    body = await render_template(
        f"waffle/{template}",
        prefix=admin_prefix(),
        worker=worker,
        may=await _may(template) if signed_in else {},
        can_logout=signed_in and session is not None and session.session_id is not None,
        csrf=session.csrf if session is not None else "",
        pending_restart=current_waffle().pending_restart if signed_in else [],
        **context,
    )
    response = Response(body, status=status, mimetype="text/html")
    if session is not None and session.unsaved:
        save_session(response, session, admin_prefix())
    return response


async def _may(template: str) -> dict[Operation, set[str]]:
    """Per operation ``template`` has buttons for, the declared keys the
    signed-in user may do it to (asked as the handlers ask: a read-only role
    may do none, then key patterns, then the app's ``authorize_keys``)."""
    waffle = current_waffle()
    return {
        operation: await allowed_keys(waffle, operation, waffle.declarations)
        for operation in CONTROLS.get(template, ())
    }


async def message_page(title: str, message: str, status: int) -> Response:
    """A page that says one thing, e.g. why a request was refused."""
    return await _render("message.html", status, title=title, message=message)


async def _session_or_refuse() -> PageSession | Response:
    """The page session; or the page explaining what the app must configure."""
    if not is_configured(current_waffle()):
        return await message_page("Admin disabled", NOT_CONFIGURED_MESSAGE, 403)
    if secret_key() is None:
        return await message_page("Admin page needs a SECRET_KEY", NO_SECRET_KEY_MESSAGE, 503)
    if not cookie_can_be_kept(request):
        return await message_page("Admin page needs HTTPS", PLAIN_HTTP_MESSAGE, 403)
    return load_session(request) or PageSession.new()


async def _actor() -> str | None:
    """Who is using the page, or None when they must log in (401)."""
    try:
        return await authenticate(current_waffle(), request, page=True)
    except AdminError as error:
        if error.code == 401:
            return None
        raise


async def _signed_in(login_error: str | None = None) -> tuple[PageSession, str] | Response:
    """The page session and who is using the page; or the page to show instead:
    what the app must configure, or the login form (401) with ``login_error``."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    actor = await _actor()
    if actor is None:
        return await _render("login.html", 401, session, error=login_error)
    return session, actor


async def _signed_in_form(
    login_error: str | None = None,
) -> tuple[PageSession, str, MultiDict[str, str]] | Response:
    """As :func:`_signed_in`, with the posted form once its CSRF token is
    checked: every page handler that changes something starts here."""
    signed_in = await _signed_in(login_error)
    if isinstance(signed_in, Response):
        return signed_in
    return (*signed_in, await _checked_form())


def _read_only_notice() -> str | None:
    access = current_access()
    if access.role != "read":
        return None
    return f"Signed in as {access.actor}, read-only: you may look at everything; saving is refused."


def _redirect_home(query: str = "") -> Response:
    response = redirect(f"{admin_prefix()}/{query}", 303)
    assert isinstance(response, Response)
    return response


async def _checked_form() -> MultiDict[str, str]:
    """The posted form, once its CSRF token matches the session's."""
    form = await read_form()
    if not csrf_matches(load_session(request), form.get("csrf")):
        raise AdminError(
            403, "csrf", "This form has expired or did not come from this page: reload and retry."
        )
    return form


@page.get("/static/waffle/<name>")
async def static(name: str) -> Response:
    """The page's CSS and script (no login needed: the login page uses them)."""
    return static_file(name)


@page.get("/")
async def index() -> Response:
    """The settings, or the login form."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    waffle = current_waffle()
    assert waffle.config is not None
    if await _actor() is None:
        return await _render("login.html", 200, session, error=None)
    saved = natural_number(request.args.get("saved"))
    if saved is not None and saved > waffle.revision:
        # the save was answered by another worker: read what it wrote, not an older page
        await waffle.refresh()
    shown = await readable(waffle, waffle.declarations)
    declarations = {key: item for key, item in waffle.declarations.items() if key in shown}
    view = PageFilter.from_args(request.args)
    listed = view.apply(declarations, waffle.snapshot, waffle.pending_restart)
    upcoming = [
        entry
        for entry in await waffle.scheduled()
        if entry.state in ACTIVE and shown.issuperset(entry.values)
    ]
    return await _render(
        "settings.html",
        200,
        session,
        groups=grouped_fields(listed, waffle.snapshot),
        view=view,
        all_groups=group_names(declarations),
        counts=(len(listed), len(declarations)),
        schedule=upcoming,
        scheduled_keys={key: entry for entry in reversed(upcoming) for key in entry.values},
        form_revision=waffle.revision,
        notice=saved_notice(saved, request.args) or _read_only_notice(),
        fleet=await fleet_view(waffle),
        problem=None,
        signed_in=True,
    )


@page.post("/login")
async def login() -> Response:
    """Exchange the admin token for a session cookie."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    check_same_origin(request)
    form = await _checked_form()
    tokens = credentials(current_waffle())
    if not tokens:
        return await _render(
            "login.html", 401, session, error="Token login is off: the app uses its own login."
        )
    named = token_login(request, form.get("token", ""), tokens, where="the login form")
    if named is None:
        return await _render("login.html", 401, session, error="That token is wrong.")
    sessions = page_sessions()
    if session.session_id is not None:
        await sessions.close(session.session_id)
    response = _redirect_home()
    save_session(
        response, PageSession.new(await sessions.open(), fingerprint(named.token)), admin_prefix()
    )
    return response


@page.post("/logout")
async def logout() -> Response:
    """End the session on every worker and forget its cookie."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    await _checked_form()
    if session.session_id is not None:
        await page_sessions().close(session.session_id)
    response = _redirect_home()
    clear_session(response, admin_prefix())
    return response


@page.post("/save")
async def save() -> Response:
    """Validate and store the changed inputs as one revision."""
    posted = await _signed_in_form("Log in again to save.")
    if isinstance(posted, Response):
        return posted
    session, actor, form = posted
    refuse_read_only()
    waffle = current_waffle()
    texts, originals = submitted(waffle.declarations, form)
    edited = edited_texts(waffle.declarations, waffle.snapshot, texts, originals)
    expected = natural_number(form.get("revision"))
    try:
        await refuse_stale_secrets(waffle, edited, expected)
    except ConflictError as error:
        return await _conflict(session, edited, error)
    changes, errors = parsed_changes(waffle.declarations, waffle.snapshot, edited)
    if errors or expected is None:
        # What the form showed and its revision are kept, so a save after
        # fixing the errors still detects changes made meanwhile.
        return await _render(
            "settings.html",
            422,
            session,
            groups=grouped_fields(waffle.declarations, waffle.snapshot, edited, originals, errors),
            form_revision=waffle.revision if expected is None else expected,
            notice=None,
            problem="Nothing was saved: fix the fields marked below."
            if errors
            else "Nothing was saved: the form lost its revision; reload the page.",
            signed_in=True,
        )
    if not changes:
        return _redirect_home(f"?saved={waffle.revision}{PageFilter.from_args(form).query()}")
    await check_keys(waffle, "write", changes)
    try:
        # the answer waits (a little) until every worker serves what was saved
        ack = await waffle.update(
            changes,
            expected_revision=expected,
            actor=actor,
            reason=form.get("reason", ""),
            wait=PAGE_WAIT,
        )
    except ConflictError as error:
        return await _conflict(session, edited, error)
    except InvalidValueError as error:
        return await _render(
            "settings.html",
            422,
            session,
            groups=grouped_fields(
                waffle.declarations, waffle.snapshot, edited, originals, error.errors
            ),
            form_revision=expected,
            notice=None,
            problem="Nothing was saved: fix the fields marked below.",
            signed_in=True,
        )
    revision = ack.revision
    back = PageFilter.from_args(form).query()  # the filtered view the form was saved from
    return _redirect_home(f"?saved={revision}{acknowledgement_query(ack)}{back}")


async def _conflict(session: PageSession, edited: dict[str, str], error: ConflictError) -> Response:
    """409: the form was older than a change to a key it edits; the edits are kept."""
    waffle = current_waffle()
    await waffle.refresh()
    names = ", ".join(sorted(error.current))
    return await _render(
        "settings.html",
        409,
        session,
        groups=grouped_fields(waffle.declarations, waffle.snapshot, edited),
        form_revision=waffle.revision,
        notice=None,
        problem=f"Nothing was saved: someone else changed {names} meanwhile. Your edits"
        " are kept, with their current values under them and in the fields you did not"
        " edit; save again to overwrite theirs with yours.",
        signed_in=True,
    )


@page.post("/reset")
async def reset() -> Response:
    """Make one setting (form field ``key``) follow its declared default again."""
    posted = await _signed_in_form("Log in again to reset.")
    if isinstance(posted, Response):
        return posted
    session, actor, form = posted
    waffle = current_waffle()
    key = form.get("key", "")
    if key not in waffle.declarations:
        raise AdminError(422, "unknown_setting", "The reset button names no declared setting.")
    await check_keys(waffle, "reset", [key])
    try:
        revision = await waffle.reset(
            [key],
            expected_revision=natural_number(form.get("revision")),
            actor=actor,
            reason=form.get("reason", ""),
        )
    except ConflictError:
        await waffle.refresh()
        return await _render(
            "settings.html",
            409,
            session,
            signed_in=True,
            groups=grouped_fields(waffle.declarations, waffle.snapshot),
            form_revision=waffle.revision,
            notice=None,
            problem=f"Nothing was reset: someone else changed {key} meanwhile. Its current"
            " value is shown below; reset it again if you still mean to.",
        )
    return _redirect_home(f"?saved={revision}{PageFilter.from_args(form).query()}")


@page.get("/fleet")
async def fleet() -> Response:
    """The fleet panel's data, as ``GET <prefix>/api/fleet`` answers, for the
    logged-in page (whose script sends its session cookie, not a token)."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    if await _actor() is None:
        raise AdminError(401, "unauthorized", "Log in to see the fleet.")
    return jsonify((await current_waffle().fleet()).as_dict())


@page.get("/history/<key>")
async def key_history(key: str) -> Response:
    """The changes of one setting, newest first."""
    signed_in = await _signed_in()
    if isinstance(signed_in, Response):
        return signed_in
    session, _ = signed_in
    waffle = current_waffle()
    if key not in waffle.declarations:
        return await message_page("Unknown setting", f"No setting is declared as {key!r}.", 404)
    raw_before = request.args.get("before", "")
    before = natural_number(raw_before)
    if raw_before and before is None:
        raise AdminError(422, "invalid_query", "The page link is broken: before must be a number.")
    await check_keys(waffle, "read", [key])
    entries = await waffle.history(key=key, before_id=before, limit=HISTORY_PAGE_SIZE)
    return await _render(
        "history.html",
        200,
        session,
        setting=waffle.declarations[key],
        entries=[history_item(waffle, entry) for entry in entries],
        next_before=entries[-1].id if len(entries) == HISTORY_PAGE_SIZE else None,
        form_revision=waffle.revision,
        filters={},
        signed_in=True,
    )


@page.get("/history")
async def all_history() -> Response:
    """The changes of every setting, newest first, filtered by key, actor and time."""
    signed_in = await _signed_in()
    if isinstance(signed_in, Response):
        return signed_in
    session, _ = signed_in
    waffle = current_waffle()
    filters = {name: request.args.get(name, "") for name in ("key", "actor", "since", "until")}
    if filters["key"] and filters["key"] not in waffle.declarations:
        raise AdminError(422, "invalid_query", f"No setting is declared as {filters['key']!r}.")
    before = natural_number(request.args.get("before", ""))
    entries = await waffle.history(
        key=filters["key"] or None,
        actor=filters["actor"] or None,
        since=query_time("since"),
        until=query_time("until"),
        before_id=before,
        limit=HISTORY_PAGE_SIZE,
    )
    shown = await readable(waffle, {entry.key for entry in entries})
    return await _render(
        "history.html",
        200,
        session,
        setting=None,
        entries=[history_item(waffle, entry) for entry in entries if entry.key in shown],
        next_before=entries[-1].id if len(entries) == HISTORY_PAGE_SIZE else None,
        form_revision=waffle.revision,
        filters=filters,
        signed_in=True,
    )


@page.post("/revert")
@page.post("/restore")
async def rollback() -> Response:
    """Revert one revision (form: ``revision``, ``force``) or restore every
    setting as it was at it (form: ``revision``, ``expected``), as a new one."""
    posted = await _signed_in_form("Log in again to roll back.")
    if isinstance(posted, Response):
        return posted
    _, actor, form = posted
    waffle = current_waffle()
    revision = natural_number(form.get("revision"))
    if revision is None:
        raise AdminError(422, "invalid_form", "The form names no revision: reload the page.")
    reason = form.get("reason", "")
    operation: Literal["revert", "restore"] = (
        "revert" if request.path.endswith("/revert") else "restore"
    )
    seen = await check_rollback(waffle, operation, revision)
    try:
        if operation == "revert":
            new = await waffle.revert(
                revision, force=form.get("force") == "1", actor=actor, reason=reason
            )
        else:
            expected = natural_number(form.get("expected"))
            expected = seen if expected is None else expected
            new = await waffle.restore(
                revision, expected_revision=expected, actor=actor, reason=reason
            )
    except ConflictError as error:
        names = ", ".join(sorted(error.current))
        return await message_page(
            "Nothing was rolled back",
            f"{names} changed after revision {error.expected_revision}; nothing was stored."
            " Look at the history, then revert again with 'even if changed since' ticked"
            " if you still mean to.",
            409,
        )
    except InvalidValueError as error:
        return await message_page("Nothing was rolled back", str(error), 422)
    return _redirect_home(f"?saved={new}")


@page.errorhandler(AdminError)
async def _admin_error(error: AdminError) -> Response:
    response = await message_page("Refused", error.message, error.code or 400)
    response.headers.update(error.headers)
    return response


@page.errorhandler(StoreUnavailableError)
async def _unavailable(error: StoreUnavailableError) -> Response:
    log_unavailable(error)
    return await message_page(
        "Database unreachable",
        "The settings database cannot be reached; nothing was saved. Try again shortly.",
        503,
    )


@page.errorhandler(HTTPException)
async def _http(error: HTTPException) -> Response:
    return await message_page(error.name, error.description or error.name, error.code or 400)


@page.get("/export")
async def export_file() -> Response:
    """This environment's settings without secrets, as a file to promote elsewhere."""
    signed_in = await _signed_in()
    if isinstance(signed_in, Response):
        return signed_in
    waffle = current_waffle()
    document = export(waffle)
    shown = await readable(waffle, document["settings"])
    document["settings"] = {k: v for k, v in document["settings"].items() if k in shown}
    response = jsonify(document)
    response.headers["Content-Disposition"] = 'attachment; filename="waffle-settings.json"'
    return response


@page.get("/promote")
async def promote_form() -> Response:
    """The form to paste an export into."""
    signed_in = await _signed_in()
    if isinstance(signed_in, Response):
        return signed_in
    return await _render("promote.html", 200, signed_in[0], signed_in=True, text="", plan=None)


@page.post("/promote")
async def promote() -> Response:
    """Review the pasted export's plan, or apply it as one revision (or nothing)."""
    posted = await _signed_in_form()
    if isinstance(posted, Response):
        return posted
    session, actor, form = posted
    waffle = current_waffle()
    text = form.get("settings", "")
    dry_run = form.get("action") != "apply"
    try:
        values = read_document(text)
        expected = None if dry_run else natural_number(form.get("expected"))
        planned = await apply_document(  # as the API's apply
            waffle, values, expected, dry_run=dry_run, actor=actor, reason=form.get("reason", "")
        )
    except InvalidValueError as error:
        problem = f"Nothing was stored: {error}"
        return await _render(
            "promote.html", 422, session, signed_in=True, text=text, plan=None, problem=problem
        )
    except ConflictError as error:
        problem = (
            f"Nothing was stored: {', '.join(sorted(error.current))} changed after revision"
            f" {error.expected_revision}, which the plan was made against. Review the new plan."
        )
        await check_apply(waffle, values, None)  # the conflict may come before the check
        planned = await _readable_plan(
            await apply(waffle, values, blind_secrets=True, dry_run=True)
        )
        return await _render(
            "promote.html", 409, session, signed_in=True, text=text, plan=planned, problem=problem
        )
    if not dry_run:
        return _redirect_home(f"?saved={planned.applied_revision or waffle.revision}")
    planned = await _readable_plan(planned)
    return await _render("promote.html", 200, session, signed_in=True, text=text, plan=planned)


async def _readable_plan(planned: Plan) -> Plan:
    """``planned`` without the unchanged keys the user may not read ("unchanged" tells a value)."""
    shown = await readable(current_waffle(), planned.unchanged)
    return replace(planned, unchanged=tuple(key for key in planned.unchanged if key in shown))
