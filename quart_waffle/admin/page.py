"""The admin web page: server-rendered, grouped settings, review before save.

Login turns the admin token into a signed session cookie (the app's
``SECRET_KEY`` signs it); an ``authorize`` callback logs people in by the
app's own means. Every form carries the session's CSRF token. Secrets are
shown masked with an empty input that means "unchanged".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, redirect, render_template, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from ..errors import ConflictError, InvalidValueError, StoreUnavailableError
from ..settings import SECRET_MASK, Setting
from .api import history_item
from .auth import (
    NOT_CONFIGURED_MESSAGE,
    PageSession,
    authenticate,
    check_same_origin,
    clear_session,
    csrf_matches,
    fingerprint,
    is_configured,
    load_session,
    save_session,
    secret_key,
    token_matches,
)
from .context import admin_prefix, current_waffle
from .errors import AdminError, log_unavailable
from .inputs import natural_number, read_form

if TYPE_CHECKING:
    from ..extension import QuartWaffle

page = Blueprint(
    "waffle_page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

HISTORY_PAGE_SIZE = 50
NO_SECRET_KEY_MESSAGE = (
    "The admin page needs the app's SECRET_KEY to sign its session cookie and CSRF"
    " tokens: set app.secret_key (or SECRET_KEY in the config) to a long random value."
    " The JSON API works without it, with 'Authorization: Bearer <WAFFLE_ADMIN_TOKEN>'."
)


def raw_text(setting: Setting[Any], value: Any) -> str:
    """``value`` as a person would type it in the setting's input."""
    if setting.kind == "str":
        return str(value)
    if setting.kind == "bool":
        return "true" if value else "false"
    if setting.kind in ("int", "float"):
        return repr(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass
class Field:
    """What the template needs to draw one setting's input."""

    setting: Setting[Any]
    widget: str
    text: str
    original: str
    shown: str
    revision: int
    error: str | None = None
    options: list[tuple[str, str]] = field(default_factory=list)


def _widget(setting: Setting[Any]) -> str:
    if setting.secret:
        return "password"
    if setting.kind == "bool":
        return "checkbox"
    if setting.choices is not None:
        return "select"
    if setting.kind in ("int", "float"):
        return "number"
    if setting.kind == "str":
        return "text"
    return "textarea"


def _fields(
    waffle: QuartWaffle,
    edited: Mapping[str, str] | None = None,
    originals: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> dict[str, list[Field]]:
    """Every setting's input, grouped: the ``edited`` text where there is one,
    else the ``originals`` text the form first showed, else the current value."""
    snapshot = waffle.snapshot
    groups: dict[str, list[Field]] = {}
    for key, setting in waffle.declarations.items():
        value = snapshot.values[key]
        original = "" if setting.secret else raw_text(setting, value)
        if originals is not None and not setting.secret:
            original = originals.get(key, original)
        text = original
        if edited is not None and key in edited and not setting.secret:
            text = edited[key]
        shown = SECRET_MASK if setting.secret else json.dumps(value, ensure_ascii=False)
        options = [(raw_text(setting, choice),) * 2 for choice in setting.choices or ()]
        groups.setdefault(setting.group or "Settings", []).append(
            Field(
                setting,
                _widget(setting),
                text,
                original,
                shown,
                snapshot.revisions.get(key, 0),
                (errors or {}).get(key),
                options,
            )
        )
    return groups


def _submitted(
    waffle: QuartWaffle, form: MultiDict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The text of every setting the form carried (checkboxes as true/false),
    and the text each input first showed (``original-KEY``)."""
    texts: dict[str, str] = {}
    originals: dict[str, str] = {}
    for key, setting in waffle.declarations.items():
        name = f"value-{key}"
        if setting.kind == "bool" and not setting.secret:
            if f"present-{key}" in form:
                texts[key] = "true" if form.get(name) == "true" else "false"
        elif name in form:
            texts[key] = form.get(name, "")
        if f"original-{key}" in form and not setting.secret:
            originals[key] = form.get(f"original-{key}", "")
    return texts, originals


def _same_value(setting: Setting[Any], text: str, original: str) -> bool:
    if text == original:
        return True
    try:
        return bool(setting.parse_text(text) == setting.parse_text(original))
    except InvalidValueError:
        return False


def _edited(
    waffle: QuartWaffle, texts: Mapping[str, str], originals: Mapping[str, str]
) -> dict[str, str]:
    """The texts the person changed: those that differ from what the form
    showed, not from this worker's current value, so that another admin's
    change to a field left alone is not written back. A form without
    originals is compared with the current values."""
    edited: dict[str, str] = {}
    for key, text in texts.items():
        setting = waffle.declarations[key]
        if setting.secret:
            if text != "":  # empty means unchanged
                edited[key] = text
            continue
        original = originals.get(key)
        if original is None:
            original = raw_text(setting, waffle.snapshot.values[key])
        if not _same_value(setting, text, original):
            edited[key] = text
    return edited


def _changes(
    waffle: QuartWaffle, edited: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The edited texts parsed, less those equal to the current values, and per-key errors."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, text in edited.items():
        setting = waffle.declarations[key]
        try:
            value = setting.parse_text(text)
        except InvalidValueError as error:
            errors.update(error.errors)
            continue
        if value != waffle.snapshot.values[key]:
            changes[key] = value
    return changes, errors


async def _render(
    template: str, status: int = 200, session: PageSession | None = None, **context: Any
) -> Response:
    waffle = current_waffle()
    body = await render_template(
        f"waffle/{template}",
        prefix=admin_prefix(),
        revision=waffle.revision,
        pid=os.getpid(),
        csrf=session.csrf if session is not None else "",
        **context,
    )
    response = Response(body, status=status, mimetype="text/html")
    if session is not None:
        save_session(response, session, admin_prefix())
    return response


async def message_page(title: str, message: str, status: int) -> Response:
    """A page that says one thing, e.g. why a request was refused."""
    return await _render("message.html", status, title=title, message=message)


async def _session_or_refuse() -> PageSession | Response:
    """The page session; or the page explaining what the app must configure."""
    if not is_configured(current_waffle()):
        return await message_page("Admin disabled", NOT_CONFIGURED_MESSAGE, 403)
    if secret_key() is None:
        return await message_page("Admin page needs a SECRET_KEY", NO_SECRET_KEY_MESSAGE, 503)
    return load_session(request) or PageSession.new()


async def _actor() -> str | None:
    """Who is using the page, or None when they must log in (401)."""
    try:
        return await authenticate(current_waffle(), request, page=True)
    except AdminError as error:
        if error.code == 401:
            return None
        raise


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
    return await _render(
        "settings.html",
        200,
        session,
        groups=_fields(waffle),
        form_revision=waffle.revision,
        notice=None if saved is None else f"Saved: this worker now serves revision {saved}.",
        problem=None,
        can_logout=load_session(request) is not None,
    )


@page.post("/login")
async def login() -> Response:
    """Exchange the admin token for a session cookie."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    check_same_origin(request)
    form = await _checked_form()
    config = current_waffle().config
    token = None if config is None else config.admin_token
    if not token:
        return await _render(
            "login.html", 401, session, error="Token login is off: the app uses its own login."
        )
    if not token_matches(form.get("token", ""), token):
        return await _render("login.html", 401, session, error="That token is wrong.")
    response = _redirect_home()
    save_session(response, PageSession.new(fingerprint(token)), admin_prefix())
    return response


@page.post("/logout")
async def logout() -> Response:
    """Forget the session cookie."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    await _checked_form()
    response = _redirect_home()
    clear_session(response, admin_prefix())
    return response


@page.post("/save")
async def save() -> Response:
    """Validate and store the changed inputs as one revision."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    actor = await _actor()
    if actor is None:
        return await _render("login.html", 401, session, error="Log in again to save.")
    form = await _checked_form()
    waffle = current_waffle()
    texts, originals = _submitted(waffle, form)
    edited = _edited(waffle, texts, originals)
    changes, errors = _changes(waffle, edited)
    expected = natural_number(form.get("revision"))
    if errors or expected is None:
        # What the form showed and its revision are kept, so a save after
        # fixing the errors still detects changes made meanwhile.
        return await _render(
            "settings.html",
            422,
            session,
            groups=_fields(waffle, edited, originals, errors),
            form_revision=waffle.revision if expected is None else expected,
            notice=None,
            problem="Nothing was saved: fix the fields marked below."
            if errors
            else "Nothing was saved: the form lost its revision; reload the page.",
            can_logout=True,
        )
    if not changes:
        return _redirect_home(f"?saved={waffle.revision}")
    try:
        revision = await waffle.update(changes, expected_revision=expected, actor=actor)
    except ConflictError as error:
        await waffle.refresh()
        names = ", ".join(sorted(error.current))
        return await _render(
            "settings.html",
            409,
            session,
            groups=_fields(waffle, edited),
            form_revision=waffle.revision,
            notice=None,
            problem=f"Nothing was saved: someone else changed {names} meanwhile. Your edits"
            " are kept, with their current values under them and in the fields you did not"
            " edit; save again to overwrite theirs with yours.",
            can_logout=True,
        )
    except InvalidValueError as error:
        return await _render(
            "settings.html",
            422,
            session,
            groups=_fields(waffle, edited, originals, error.errors),
            form_revision=expected,
            notice=None,
            problem="Nothing was saved: fix the fields marked below.",
            can_logout=True,
        )
    return _redirect_home(f"?saved={revision}")


@page.get("/history/<key>")
async def key_history(key: str) -> Response:
    """The changes of one setting, newest first."""
    session = await _session_or_refuse()
    if isinstance(session, Response):
        return session
    if await _actor() is None:
        return await _render("login.html", 401, session, error=None)
    waffle = current_waffle()
    if key not in waffle.declarations:
        return await message_page("Unknown setting", f"No setting is declared as {key!r}.", 404)
    raw_before = request.args.get("before", "")
    before = natural_number(raw_before)
    if raw_before and before is None:
        raise AdminError(422, "invalid_query", "The page link is broken: before must be a number.")
    entries = await waffle.history(key=key, before_id=before, limit=HISTORY_PAGE_SIZE)
    return await _render(
        "history.html",
        200,
        session,
        setting=waffle.declarations[key],
        entries=[history_item(waffle, entry) for entry in entries],
        next_before=entries[-1].id if len(entries) == HISTORY_PAGE_SIZE else None,
        can_logout=True,
    )


@page.errorhandler(AdminError)
async def _admin_error(error: AdminError) -> Response:
    return await message_page("Refused", error.message, error.code or 400)


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
