"""Cross-site request forgery: when an ``authorize`` callback reads cookies,
every unsafe API method (with a body or without) refuses what another site
could make a browser send, with a JSON 403 naming the header and the reason;
the page refuses ``Origin: null`` and foreign origins besides its CSRF token."""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart import Request, g

from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, make_waffle, serving

COOKIE = {"Cookie": "app_session=alice"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}

UNSAFE: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/waffle/api/settings/THEME", {"json": {"value": "dark"}}),
    ("PATCH", "/waffle/api/settings", {"json": {"values": {"THEME": "dark"}}}),
    ("DELETE", "/waffle/api/settings/MAX_ITEMS", {}),
    ("POST", "/waffle/api/settings/MAX_ITEMS/reset", {}),
]
FORGERIES: list[tuple[str, dict[str, str], str]] = [
    # (name, headers besides the cookie, header named in the refusal)
    ("origin null", {**SAME_ORIGIN, "Origin": "null"}, "Origin"),
    ("foreign origin", {**SAME_ORIGIN, "Origin": "https://evil.example"}, "Origin"),
    ("same host, other scheme", {**SAME_ORIGIN, "Origin": "https://localhost"}, "Origin"),
    ("same host, other port", {**SAME_ORIGIN, "Origin": "http://localhost:8080"}, "Origin"),
    ("not an origin", {**SAME_ORIGIN, "Origin": "localhost"}, "Origin"),
    ("bad port", {**SAME_ORIGIN, "Origin": "http://localhost:99999"}, "Origin"),
    ("cross-site", {**SAME_ORIGIN, "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
    ("same-site", {**SAME_ORIGIN, "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site"),
    ("no sec-fetch-site", {"Origin": "http://localhost"}, "Sec-Fetch-Site"),
    ("no headers at all", {}, "Sec-Fetch-Site"),
    ("form type", {**SAME_ORIGIN, "Content-Type": "application/x-www-form-urlencoded"},
     "Content-Type"),
    ("multipart type", {**SAME_ORIGIN, "Content-Type": "multipart/form-data; boundary=x"},
     "Content-Type"),
    ("text/plain", {**SAME_ORIGIN, "Content-Type": "text/plain;charset=UTF-8"}, "Content-Type"),
]  # fmt: skip


def cookie_waffle(database_url: str, **options: Any) -> QuartWaffle:
    """The admin let in by the app's own session cookie."""

    async def authorize(request: Request) -> bool:
        if request.cookies.get("app_session") == "alice":
            g.waffle_actor = "alice"
            return True
        return False

    waffle = make_waffle(database_url, authorize=authorize, **options)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    return waffle


@pytest.mark.parametrize(
    ("headers", "named"), [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES]
)
async def test_cookie_authorized_api_refuses_forgeries(
    sqlite_url: str, headers: dict[str, str], named: str
) -> None:
    waffle = cookie_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        for method, path, options in UNSAFE:
            if "Content-Type" in headers:
                # the forged body as a form or text would carry it
                options = {"data": b'{"value": "dark"}'}
            response = await client.open(
                path, method=method, headers={**COOKIE, **headers}, **options
            )
            where = (method, path)
            assert response.status_code == 403, where
            error = (await response.get_json())["error"]
            assert error["code"] == "cross_site", where
            assert error["fields"].get(named), (where, error)
            assert "cross-site" in error["message"], where
        assert waffle.revision == 0
        assert await waffle.history() == []


async def test_cookie_authorized_api_serves_its_own_origin(sqlite_url: str) -> None:
    waffle = cookie_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        # reads are not forgeable into changes: no headers needed
        assert (await client.get("/waffle/api/settings", headers=COOKIE)).status_code == 200
        for method, path, options in UNSAFE:
            response = await client.open(
                path, method=method, headers={**COOKIE, **SAME_ORIGIN}, **options
            )
            assert response.status_code == 200, (method, path, await response.get_data())
        # no Origin at all is fine when the browser says same-origin
        response = await client.put(
            "/waffle/api/settings/THEME",
            json={"value": "light"},
            headers={**COOKIE, "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200
        # the same scheme, host and port, written with or without the default port
        for scheme, origin in (
            ("http", "http://localhost:80"),
            ("https", "https://localhost"),
            ("https", "HTTPS://LOCALHOST:443"),
        ):
            response = await client.put(
                "/waffle/api/settings/THEME",
                json={"value": "light"},
                headers={**COOKIE, "Sec-Fetch-Site": "same-origin", "Origin": origin},
                scheme=scheme,
            )
            assert response.status_code == 200, origin
        assert {entry.actor for entry in await waffle.history()} == {"alice"}


async def test_bearer_token_needs_no_browser_headers(sqlite_url: str) -> None:
    """A bearer token is never sent by a browser on its own: scripts need no Sec-Fetch-*."""
    waffle = cookie_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    async with serving(waffle):
        response = await waffle.app.test_client().delete(
            "/waffle/api/settings/THEME",
            headers={**COOKIE, "Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "https://evil.example"},
        {"Origin": "https://localhost"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin null", "foreign origin", "other scheme", "cross-site"],
)
async def test_page_forms_refuse_forgeries(sqlite_url: str, headers: dict[str, str]) -> None:
    waffle = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    async with serving(waffle):
        client = waffle.app.test_client()
        page = await (await client.get("/waffle/")).get_data(as_text=True)
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None
        form = {"csrf": match.group(1), "token": ADMIN_TOKEN}
        refused = await client.post("/waffle/login", form=form, headers=headers)
        assert refused.status_code == 403
        assert "cross-site" in await refused.get_data(as_text=True)
        assert "Set-Cookie" not in refused.headers
        allowed = await client.post(
            "/waffle/login", form=form, headers={"Origin": "http://localhost"}
        )
        assert allowed.status_code == 303


async def test_the_page_asks_browsers_for_its_own_origin(sqlite_url: str) -> None:
    """With no-referrer, browsers send 'Origin: null' even for the page's own
    forms; same-origin makes them send the real origin, which is checked."""
    waffle = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    async with serving(waffle):
        response = await waffle.app.test_client().get("/waffle/")
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert '<meta name="referrer" content="same-origin">' in await response.get_data(
            as_text=True
        )
