"""The admin web page through the test client: login, CSRF, save, errors, secrets."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from quart import Request, g
from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from quart_waffle.admin import page as page_module
from tests.helpers import ADMIN_TOKEN, make_waffle, serving

TOKEN = ADMIN_TOKEN
SECRET = "s3cret"
NEW_SECRET = "brand-new-s3cret"


def _page_waffle(
    database_url: str, secret_key: str | None = "test-secret-key", **options: Any
) -> QuartWaffle:
    waffle = make_waffle(database_url, **options)
    assert waffle.app is not None
    waffle.app.secret_key = secret_key
    return waffle


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


async def text_of(response: Any) -> str:
    text: str = await response.get_data(as_text=True)
    return text


async def logged_in(client: Client) -> str:
    """Log in with the token; return the CSRF token of the settings page."""
    login_page = await client.get("/waffle/")
    assert login_page.status_code == 200
    assert "Log in" in await text_of(login_page)
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await text_of(login_page)), "token": TOKEN}
    )
    assert response.status_code == 303
    page = await client.get("/waffle/")
    html = await text_of(page)
    assert 'id="settings-form"' in html
    return csrf_of(html)


class _FormReader(HTMLParser):
    """The fields a browser would post from the settings form, as drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        name = attributes.get("name", "")
        if tag == "input" and name:
            if attributes.get("type") != "checkbox" or "checked" in attributes:
                self.fields[name] = attributes.get("value", "")
        elif tag == "textarea":
            self._textarea = name
            self.fields[name] = ""
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.fields[self._select] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.fields[self._textarea] += data


def form_in(html: str, **changes: str) -> dict[str, str]:
    """The settings form of ``html`` as the browser would post it, ``changes`` typed in."""
    reader = _FormReader()
    reader.feed(html)
    fields = {name: value for name, value in reader.fields.items() if name != "confirm"}
    for key, text in changes.items():
        assert f"value-{key}" in fields, key
        fields[f"value-{key}"] = text
    return fields


def form_of(waffle: QuartWaffle, csrf: str, **changes: str) -> dict[str, str]:
    """The form as the browser would post it, with ``changes`` applied."""
    form = {"csrf": csrf, "revision": str(waffle.revision)}
    for key, setting in waffle.declarations.items():
        value = waffle.get(key)
        if setting.kind == "bool":
            form[f"present-{key}"] = "1"
            if value:
                form[f"value-{key}"] = "true"
        elif setting.secret:
            form[f"value-{key}"] = ""
        elif setting.kind in ("str",):
            form[f"value-{key}"] = value
        elif setting.kind in ("int", "float"):
            form[f"value-{key}"] = repr(value)
        else:
            form[f"value-{key}"] = json.dumps(value)
    for key, setting in waffle.declarations.items():
        if setting.kind == "bool":
            form[f"original-{key}"] = "true" if waffle.get(key) else "false"
        elif not setting.secret:
            form[f"original-{key}"] = form[f"value-{key}"]
    for key, text in changes.items():
        if text == "<unchecked>":
            form.pop(f"value-{key}", None)
        else:
            form[f"value-{key}"] = text
    return form


async def test_login_sets_a_strict_cookie(client: Client) -> None:
    first = await client.get("/waffle/")
    cookie = first.headers["Set-Cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/waffle"):
        assert flag in cookie
    wrong = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await text_of(first)), "token": "nope"}
    )
    assert wrong.status_code == 401
    assert "wrong" in await text_of(wrong)
    assert 'id="settings-form"' not in await text_of(await client.get("/waffle/"))
    await logged_in(client)


async def test_login_needs_csrf(client: Client) -> None:
    await client.get("/waffle/")
    response = await client.post("/waffle/login", form={"csrf": "forged", "token": TOKEN})
    assert response.status_code == 403
    assert 'id="settings-form"' not in await text_of(await client.get("/waffle/"))


async def test_page_lists_groups_and_inputs(client: Client, waffle: QuartWaffle) -> None:
    await logged_in(client)
    html = await text_of(await client.get("/waffle/"))
    assert f'serves revision <strong id="worker-revision">{waffle.revision}</strong>' in html
    assert '<input type="checkbox" id="value-MAINTENANCE"' in html
    assert '<select id="value-THEME"' in html
    assert 'type="number" id="value-MAX_ITEMS"' in html
    assert 'min="1"' in html
    assert '<textarea id="value-BANNER"' in html
    assert 'type="password" id="value-API_KEY" name="value-API_KEY" value=""' in html
    assert SECRET not in html


async def test_save_changes_and_records_actor(client: Client, waffle: QuartWaffle) -> None:
    csrf = await logged_in(client)
    form = form_of(waffle, csrf, MAX_ITEMS="30", THEME="dark", MAINTENANCE="true")
    response = await client.post("/waffle/save", form=form)
    assert response.status_code == 303
    assert waffle.get("MAX_ITEMS") == 30
    assert waffle.get("THEME") == "dark"
    assert waffle.get("MAINTENANCE") is True
    assert waffle.get("API_KEY") == SECRET  # empty secret input: unchanged
    assert {entry.actor for entry in await waffle.history()} == {"token"}
    page = await text_of(await client.get(response.headers["Location"]))
    assert f"now serves revision {waffle.revision}" in page
    form = form_of(waffle, csrf, MAINTENANCE="<unchecked>", API_KEY=NEW_SECRET)
    assert (await client.post("/waffle/save", form=form)).status_code == 303
    assert waffle.get("MAINTENANCE") is False
    assert waffle.get("API_KEY") == NEW_SECRET
    history = await text_of(await client.get("/waffle/history/API_KEY"))
    assert "********" in history
    assert NEW_SECRET not in history
    assert SECRET not in history
    assert NEW_SECRET not in await text_of(await client.get("/waffle/"))


async def test_invalid_input_is_shown_inline(client: Client, waffle: QuartWaffle) -> None:
    csrf = await logged_in(client)
    revision = waffle.revision
    form = form_of(waffle, csrf, MAX_ITEMS="9999", GREETING="Hey", BANNER="{not json")
    response = await client.post("/waffle/save", form=form)
    assert response.status_code == 422
    html = await text_of(response)
    assert 'id="error-MAX_ITEMS"' in html
    assert "must be at most 500" in html
    assert 'id="error-BANNER"' in html
    assert "9999" in html  # the person's input is kept for fixing
    assert waffle.get("GREETING") == "Hello"
    assert waffle.revision == revision


async def test_numbers_in_input_are_ascii_digits(client: Client, waffle: QuartWaffle) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` raises: such input is refused, never a 500."""
    csrf = await logged_in(client)
    revision = waffle.revision
    for raw in ("²", "\N{ARABIC-INDIC DIGIT ONE}", "\N{MATHEMATICAL DOUBLE-STRUCK DIGIT ONE}"):
        form = {**form_of(waffle, csrf, GREETING="Hey"), "revision": raw}
        response = await client.post("/waffle/save", form=form)
        assert response.status_code == 422
        assert "reload the page" in await text_of(response)
        history = await client.get("/waffle/history/GREETING", query_string={"before": raw})
        assert history.status_code == 422
        index = await client.get("/waffle/", query_string={"saved": raw})
        assert index.status_code == 200
        assert "Saved:" not in await text_of(index)
    assert waffle.revision == revision
    assert waffle.get("GREETING") == "Hello"


async def test_save_without_csrf_or_login_is_refused(client: Client, waffle: QuartWaffle) -> None:
    revision = waffle.revision
    anonymous = await client.post("/waffle/save", form=form_of(waffle, "x", THEME="dark"))
    assert anonymous.status_code in (401, 403)
    csrf = await logged_in(client)
    forged = await client.post("/waffle/save", form=form_of(waffle, "forged", THEME="dark"))
    assert forged.status_code == 403
    cross_site = await client.post(
        "/waffle/save",
        form=form_of(waffle, csrf, THEME="dark"),
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    sibling = await client.post(
        "/waffle/save",
        form=form_of(waffle, csrf, THEME="dark"),
        headers={"Sec-Fetch-Site": "same-site"},
    )
    assert sibling.status_code == 403
    assert waffle.get("THEME") == "light"
    hidden_origin = await client.post(
        "/waffle/save",
        form=form_of(waffle, csrf, THEME="dark"),
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert hidden_origin.status_code == 403
    assert waffle.get("THEME") == "light"
    own_form = await client.post(
        "/waffle/save",
        form=form_of(waffle, csrf, THEME="dark"),
        headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )
    assert own_form.status_code == 303
    assert waffle.get("THEME") == "dark"
    assert waffle.revision == revision + 1


async def test_conflict_is_shown(client: Client, waffle: QuartWaffle) -> None:
    csrf = await logged_in(client)
    stale = form_of(waffle, csrf, GREETING="Mine")
    await waffle.update({"GREETING": "Theirs"}, actor="someone")
    response = await client.post("/waffle/save", form=stale)
    assert response.status_code == 409
    html = await text_of(response)
    assert "GREETING" in html
    assert "Theirs" in html
    assert waffle.get("GREETING") == "Theirs"
    again = await client.post("/waffle/save", form={**stale, "revision": str(waffle.revision)})
    assert again.status_code == 303
    assert waffle.get("GREETING") == "Mine"


async def post_chunked(client: Client, path: str, size: int, content_type: str) -> Any:
    """POST ``size`` bytes in 64 KiB chunks without a Content-Length, as a chunked request."""
    headers = {"Content-Type": content_type, "Transfer-Encoding": "chunked"}
    async with client.request(path, method="POST", headers=headers) as connection:
        chunk = b"a=" + b"x" * (64 * 1024 - 2)
        for _ in range(size // len(chunk)):
            await connection.send(chunk)
        await connection.send_complete()
    return await connection.as_response()


async def test_chunked_form_over_the_limit_is_refused(client: Client) -> None:
    await client.get("/waffle/")
    response = await post_chunked(
        client, "/waffle/login", 2 * 1024 * 1024, "application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert "text/html" in response.headers["Content-Type"]


async def test_malformed_form_is_refused(client: Client) -> None:
    await client.get("/waffle/")
    for body, content_type in [
        (b"csrf=a&%FF=1", "application/x-www-form-urlencoded"),
        (b'{"csrf": "a"}', "application/json"),
    ]:
        response = await client.post(
            "/waffle/login", data=body, headers={"Content-Type": content_type}
        )
        assert response.status_code in (400, 415), body


async def test_save_writes_only_what_this_page_changed(client: Client, waffle: QuartWaffle) -> None:
    """Another admin's change to a field this page did not touch survives the save."""
    await logged_in(client)
    shown = await text_of(await client.get("/waffle/"))
    await waffle.update({"MAX_ITEMS": 50, "THEME": "dark"}, actor="someone else")
    response = await client.post("/waffle/save", form=form_in(shown, GREETING="Mine"))
    assert response.status_code == 303
    assert waffle.get("GREETING") == "Mine"
    assert waffle.get("MAX_ITEMS") == 50
    assert waffle.get("THEME") == "dark"
    [entry] = await waffle.history(key="GREETING")
    assert entry.actor == "token"
    assert [entry.actor for entry in await waffle.history(key="MAX_ITEMS")] == ["someone else"]


async def test_conflict_shows_their_values_in_fields_not_edited(
    client: Client, waffle: QuartWaffle
) -> None:
    await logged_in(client)
    shown = await text_of(await client.get("/waffle/"))
    await waffle.update({"MAX_ITEMS": 50, "GREETING": "Theirs"}, actor="someone else")
    response = await client.post("/waffle/save", form=form_in(shown, GREETING="Mine"))
    assert response.status_code == 409
    conflict = await text_of(response)
    assert "GREETING" in conflict
    redrawn = form_in(conflict)
    assert redrawn["value-GREETING"] == "Mine"  # the edit is kept
    assert redrawn["value-MAX_ITEMS"] == "50"  # their value, not the one first shown
    again = await client.post("/waffle/save", form=redrawn)
    assert again.status_code == 303
    assert waffle.get("GREETING") == "Mine"
    assert waffle.get("MAX_ITEMS") == 50


async def test_security_headers_and_logout(client: Client) -> None:
    csrf = await logged_in(client)
    response = await client.get("/waffle/")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert (await client.get("/waffle/static/waffle/admin.js")).status_code == 200
    assert (await client.post("/waffle/logout", form={"csrf": csrf})).status_code == 303
    assert 'id="settings-form"' not in await text_of(await client.get("/waffle/"))


async def test_page_without_secret_key_explains(sqlite_url: str) -> None:
    waffle = _page_waffle(sqlite_url, secret_key=None, admin_token=TOKEN)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        response = await client.get("/waffle/")
        assert response.status_code == 503
        assert "SECRET_KEY" in await text_of(response)
        api = await client.get("/waffle/api/settings", headers={"Authorization": f"Bearer {TOKEN}"})
        assert api.status_code == 200


async def test_page_not_configured_explains(sqlite_url: str) -> None:
    waffle = _page_waffle(sqlite_url)
    assert waffle.app is not None
    async with waffle.app.test_app():
        response = await waffle.app.test_client().get("/waffle/")
        assert response.status_code == 403
        assert "WAFFLE_ADMIN_TOKEN" in await text_of(response)


async def test_page_with_authorize_callback(sqlite_url: str) -> None:
    async def authorize(request: Request) -> bool:
        if request.headers.get("X-User") == "alice":
            g.waffle_actor = "alice"
            return True
        return False

    waffle = _page_waffle(sqlite_url, authorize=authorize)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        assert (await client.get("/waffle/")).status_code == 403
        page = await client.get("/waffle/", headers={"X-User": "alice"})
        assert page.status_code == 200
        csrf = csrf_of(await text_of(page))
        response = await client.post(
            "/waffle/save", form=form_of(waffle, csrf, THEME="dark"), headers={"X-User": "alice"}
        )
        assert response.status_code == 303
        [entry] = await waffle.history(key="THEME")
        assert entry.actor == "alice"


async def test_history_page_links_to_older_entries(
    client: Client, waffle: QuartWaffle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page_module, "HISTORY_PAGE_SIZE", 2)
    await logged_in(client)
    for value in (2, 3, 4):
        await waffle.update({"MAX_ITEMS": value}, actor="someone")
    newest = await waffle.history(key="MAX_ITEMS")
    first = await text_of(await client.get("/waffle/history/MAX_ITEMS"))
    older = re.search(r'href="(/waffle/history/MAX_ITEMS\?before=(\d+))"', first)
    assert older is not None, first
    assert int(older.group(2)) == newest[1].id
    second = await text_of(await client.get(older.group(1)))
    assert "<code>2</code>" in second
    assert "<code>4</code>" not in second
    assert "before=" not in second


async def test_saved_page_from_another_worker_shows_the_saved_values(sqlite_url: str) -> None:
    """The redirect after a save may reach a worker that has not heard of it
    yet: that worker catches up before drawing the page."""
    first = _page_waffle(sqlite_url, admin_token=TOKEN, check_interval=3600.0)
    second = _page_waffle(sqlite_url, admin_token=TOKEN, check_interval=3600.0)
    assert first.app is not None
    assert second.app is not None
    async with serving(first, second):
        client = first.app.test_client()
        csrf = await logged_in(client)
        response = await client.post("/waffle/save", form=form_of(first, csrf, GREETING="Saved"))
        assert response.status_code == 303
        assert client.cookie_jar is not None
        cookie = {"Cookie": "; ".join(f"{c.name}={c.value}" for c in client.cookie_jar)}
        assert second.get("GREETING") == "Hello"  # no channel: it has not heard
        page = await second.app.test_client().get(response.headers["Location"], headers=cookie)
        assert "Saved: this worker now serves revision" in await text_of(page)
        assert form_in(await text_of(page))["value-GREETING"] == "Saved"


async def test_number_inputs_step_by_their_schema(client: Client) -> None:
    """Whole numbers for an integer setting, any for a float: read from the kind's schema."""
    await logged_in(client)
    html = await text_of(await client.get("/waffle/"))
    steps = dict(re.findall(r'id="value-(\w+)"[^>]*?step="([^"]+)"', html, re.DOTALL))
    assert steps == {"MAX_ITEMS": "1", "RATE": "any"}
