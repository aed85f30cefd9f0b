"""Who may use the admin, proven by what must be refused: a table of near-miss
credentials on the API and the page (empty, prefix, suffix, other case, other
schemes), other schemes handed to the ``authorize`` callback, token rotation
ending page sessions, cross-site signals under a cookie-using callback, and a
fuzzer over the ``Authorization`` header."""

from __future__ import annotations

import base64
import itertools
import string
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from quart import Request, g
from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from quart_waffle.admin import throttle
from tests.helpers import ADMIN_TOKEN, make_waffle, serving
from tests.test_admin_page import csrf_of

TOKEN = ADMIN_TOKEN
SECRET_KEY = "proof-secret-key"
SETTINGS_FORM = 'id="settings-form"'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


NEAR_MISSES: dict[str, str | None] = {
    "no header": None,
    "empty header": "",
    "empty bearer": "Bearer",
    "bearer and spaces": "Bearer     ",
    "token without a scheme": TOKEN,
    "scheme glued to the token": f"Bearer{TOKEN}",
    "prefix": f"Bearer {TOKEN[:-1]}",
    "first character": f"Bearer {TOKEN[0]}",
    "suffix": f"Bearer {TOKEN[1:]}",
    "last character": f"Bearer {TOKEN[-1]}",
    "token and more": f"Bearer {TOKEN}x",
    "token twice": f"Bearer {TOKEN} {TOKEN}",
    "other case": f"Bearer {TOKEN.upper()}",
    "one letter's case": f"Bearer {TOKEN[0].upper()}{TOKEN[1:]}",
    "basic with the token": basic("admin", TOKEN),
    "token scheme": f"Token {TOKEN}",
}
"""Authorization headers that must never let anyone in on a token-only app."""


def authorized(value: str | None) -> dict[str, str]:
    return {} if value is None else {"Authorization": value}


async def html(response: Any) -> str:
    text: str = await response.get_data(as_text=True)
    return text


async def stored(waffle: QuartWaffle) -> tuple[int, int]:
    """(store revision, history length): unchanged by any refusal."""
    await waffle.refresh()
    return waffle.revision, len(await waffle.history(limit=1000))


@pytest.fixture(name="token_app")
async def _token_app(sqlite_url: str) -> AsyncIterator[QuartWaffle]:
    """The admin with a token and no callback."""
    waffle = make_waffle(sqlite_url, admin_token=TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = SECRET_KEY
    async with serving(waffle):
        yield waffle


class Callback:
    """An ``authorize`` callback that records what it was handed: it lets in
    Basic alice:wonderland, or a ``sid=alice`` cookie."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def __call__(self, request: Request) -> bool:
        self.seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") == basic("alice", "wonderland"):
            g.waffle_actor = "basic:alice"
            return True
        if request.cookies.get("sid") == "alice":
            g.waffle_actor = "cookie:alice"
            return True
        return False


@pytest.fixture(name="callback")
def _callback() -> Callback:
    return Callback()


@pytest.fixture(name="both_app")
async def _both_app(sqlite_url: str, callback: Callback) -> AsyncIterator[QuartWaffle]:
    """The admin with a token and a callback."""
    waffle = make_waffle(sqlite_url, admin_token=TOKEN, authorize=callback)
    assert waffle.app is not None
    waffle.app.secret_key = SECRET_KEY
    async with serving(waffle):
        yield waffle


@pytest.fixture(name="cookie_app")
async def _cookie_app(sqlite_url: str, callback: Callback) -> AsyncIterator[QuartWaffle]:
    """The admin with the app's own cookie login only."""
    waffle = make_waffle(sqlite_url, authorize=callback)
    assert waffle.app is not None
    waffle.app.secret_key = SECRET_KEY
    async with serving(waffle):
        yield waffle


def client_of(waffle: QuartWaffle) -> Client:
    assert waffle.app is not None
    return waffle.app.test_client()


@pytest.mark.parametrize("header", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
async def test_api_refuses_near_miss_credentials(
    token_app: QuartWaffle, header: str | None
) -> None:
    client = client_of(token_app)
    before = await stored(token_app)
    assert (await client.get("/waffle/api/settings", headers=authorized(header))).status_code == 401
    response = await client.patch(
        "/waffle/api/settings", json={"values": {"THEME": "dark"}}, headers=authorized(header)
    )
    assert response.status_code == 401
    assert (await response.get_json())["error"]["fields"].keys() == {"Authorization"}
    assert await stored(token_app) == before
    # the control: the token itself is let in
    ok = await client.get("/waffle/api/settings", headers=authorized(f"Bearer {TOKEN}"))
    assert ok.status_code == 200


@pytest.mark.parametrize("header", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
async def test_page_refuses_near_miss_credentials(
    token_app: QuartWaffle, header: str | None
) -> None:
    client = client_of(token_app)
    page = await client.get("/waffle/", headers=authorized(header))
    assert SETTINGS_FORM not in await html(page)
    history = await client.get("/waffle/history/GREETING", headers=authorized(header))
    assert "Hello" not in await html(history)
    # the control: the token itself is let in
    page = await client.get("/waffle/", headers=authorized(f"Bearer {TOKEN}"))
    assert SETTINGS_FORM in await html(page)


LOGIN_NEAR_MISSES = {
    "empty": "",
    "spaces": "   ",
    "prefix": TOKEN[:-1],
    "first character": TOKEN[0],
    "suffix": TOKEN[1:],
    "token and more": f"{TOKEN}x",
    "other case": TOKEN.upper(),
    "bearer and the token": f"Bearer {TOKEN}",
}


@pytest.mark.parametrize("typed", list(LOGIN_NEAR_MISSES.values()), ids=list(LOGIN_NEAR_MISSES))
async def test_page_login_refuses_near_miss_tokens(token_app: QuartWaffle, typed: str) -> None:
    client = client_of(token_app)
    login_page = await client.get("/waffle/")
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await html(login_page)), "token": typed}
    )
    assert response.status_code in (401, 429)  # wrong, or throttled after several
    assert SETTINGS_FORM not in await html(await client.get("/waffle/"))


async def test_page_login_accepts_the_token(token_app: QuartWaffle) -> None:
    client = client_of(token_app)
    login_page = await client.get("/waffle/")
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await html(login_page)), "token": TOKEN}
    )
    assert response.status_code == 303
    assert SETTINGS_FORM in await html(await client.get("/waffle/"))


@pytest.mark.parametrize(
    "header",
    [basic("alice", "wonderland"), "Token abc", "Digest username=alice", None],
    ids=["basic", "token", "digest", "none"],
)
async def test_other_schemes_reach_the_callback(
    both_app: QuartWaffle, callback: Callback, header: str | None
) -> None:
    client = client_of(both_app)
    response = await client.put(
        "/waffle/api/settings/THEME", json={"value": "dark"}, headers=authorized(header)
    )
    assert callback.seen == [header]
    if header == basic("alice", "wonderland"):
        assert response.status_code == 200
        [entry] = await both_app.history(key="THEME")
        assert entry.actor == "basic:alice"
        page = await client.get("/waffle/", headers=authorized(header))
        assert SETTINGS_FORM in await html(page)
    else:
        assert response.status_code == 403
        assert (await response.get_json())["error"]["code"] == "forbidden"
        assert both_app.get("THEME") == "light"


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN.upper()}", "Bearer"],
    ids=["prefix", "other case", "empty"],
)
async def test_a_wrong_bearer_token_never_reaches_the_callback(
    both_app: QuartWaffle, callback: Callback, header: str
) -> None:
    client = client_of(both_app)
    response = await client.get(
        "/waffle/api/settings", headers={"Authorization": header, "Cookie": "sid=alice"}
    )
    assert response.status_code == 401
    assert callback.seen == []


async def test_other_schemes_are_refused_without_a_callback(token_app: QuartWaffle) -> None:
    client = client_of(token_app)
    for header in (basic("alice", "wonderland"), "Token abc"):
        response = await client.get("/waffle/api/settings", headers={"Authorization": header})
        assert response.status_code == 401


async def _login_cookie(waffle: QuartWaffle) -> str:
    """Log in on the page with the token; the session cookie as a Cookie header."""
    client = client_of(waffle)
    login_page = await client.get("/waffle/")
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(await html(login_page)), "token": TOKEN}
    )
    assert response.status_code == 303
    return response.headers["Set-Cookie"].split(";", 1)[0]


async def test_rotating_the_token_logs_page_sessions_out(
    token_app: QuartWaffle, sqlite_url: str
) -> None:
    cookie = await _login_cookie(token_app)

    def redeployed(token: str) -> QuartWaffle:
        waffle = make_waffle(sqlite_url, admin_token=token)
        assert waffle.app is not None
        waffle.app.secret_key = SECRET_KEY
        return waffle

    same, rotated = redeployed(TOKEN), redeployed(TOKEN[::-1])
    async with serving(same, rotated):
        # the control: the same cookie on another worker with the same token is a session
        page = await client_of(same).get("/waffle/", headers={"Cookie": cookie})
        assert SETTINGS_FORM in await html(page)
        csrf = csrf_of(await html(page))
        page = await client_of(rotated).get("/waffle/", headers={"Cookie": cookie})
        assert SETTINGS_FORM not in await html(page)
        before = await stored(rotated)
        response = await client_of(rotated).post(
            "/waffle/save",
            form={"csrf": csrf, "revision": str(rotated.revision), "value-THEME": "dark"},
            headers={"Cookie": cookie},
        )
        assert response.status_code in (401, 403)
        assert await stored(rotated) == before


ALICE = {"Cookie": "sid=alice", "Sec-Fetch-Site": "same-origin"}
"""Alice's browser on the app's own page."""
JSON_PUT = {"json": {"value": "dark"}}
FORM_BODY = {
    "data": b"value=dark",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}
TEXT_BODY = {"data": b'{"value": "dark"}', "headers": {"Content-Type": "text/plain"}}
CROSS_SITE: list[Any] = [
    pytest.param("PUT", "THEME", {"Origin": "https://evil.example"}, JSON_PUT, id="foreign origin"),
    pytest.param("PUT", "THEME", {"Sec-Fetch-Site": "cross-site"}, JSON_PUT, id="cross-site"),
    pytest.param("PUT", "THEME", {"Sec-Fetch-Site": "same-site"}, JSON_PUT, id="same-site"),
    pytest.param("PUT", "THEME", {"Origin": "null"}, FORM_BODY, id="null origin, form body"),
    pytest.param("PUT", "THEME", {"Origin": "null"}, TEXT_BODY, id="null origin, text body"),
    pytest.param("PUT", "THEME", {}, FORM_BODY, id="no signal, form body"),
    pytest.param("PUT", "THEME", {}, TEXT_BODY, id="no signal, text body"),
    pytest.param(
        "POST",
        "THEME/reset",
        {"Origin": "null"},
        {"headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        id="null origin, reset by an empty form",
    ),
    pytest.param(
        "DELETE",
        "THEME",
        {"Origin": "null"},
        {},
        id="null origin, delete without a body",
    ),
    pytest.param(
        "POST",
        "THEME/reset",
        {"Origin": "https://evil.example"},
        {},
        id="foreign origin, reset without a body",
    ),
]


@pytest.mark.parametrize(("method", "path", "signals", "body"), CROSS_SITE)
async def test_cross_site_writes_are_refused_under_a_cookie_callback(
    cookie_app: QuartWaffle,
    method: str,
    path: str,
    signals: dict[str, str],
    body: dict[str, Any],
) -> None:
    client = client_of(cookie_app)
    # THEME is dark first, so that a reset would be a change
    ok = await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=ALICE)
    assert ok.status_code == 200
    if method == "PUT":
        ok = await client.put("/waffle/api/settings/THEME", json={"value": "light"}, headers=ALICE)
        assert ok.status_code == 200  # and a PUT would change it back
    before = await stored(cookie_app)
    options = dict(body)
    headers = {"Cookie": "sid=alice", **signals, **options.pop("headers", {})}
    response = await client.open(
        f"/waffle/api/settings/{path}", method=method, headers=headers, **options
    )
    assert response.status_code in (403, 415), await html(response)
    assert await stored(cookie_app) == before


async def test_same_origin_writes_pass_under_a_cookie_callback(cookie_app: QuartWaffle) -> None:
    """The control for the table above: the signals a browser sends for the
    app's own pages let the write in."""
    client = client_of(cookie_app)
    for signals in ({}, {"Origin": "http://localhost"}):
        response = await client.put(
            "/waffle/api/settings/THEME", json={"value": "dark"}, headers={**ALICE, **signals}
        )
        assert response.status_code == 200, await html(response)
        await client.delete("/waffle/api/settings/THEME", headers={**ALICE, **signals})


async def test_if_match_star_writes_unconditionally(token_app: QuartWaffle) -> None:
    client = client_of(token_app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    await token_app.update({"THEME": "dark", "MAX_ITEMS": 30})  # changed after any ETag held
    for method, path, body in (
        ("PUT", "/waffle/api/settings/THEME", {"value": "light"}),
        ("PATCH", "/waffle/api/settings", {"values": {"MAX_ITEMS": 31}}),
        ("DELETE", "/waffle/api/settings/MAX_ITEMS", None),
    ):
        response = await client.open(
            path, method=method, json=body, headers={**auth, "If-Match": "*"}
        )
        assert response.status_code == 200, await html(response)
    assert token_app.get("THEME") == "light"
    assert token_app.get("MAX_ITEMS") == 20


# The fuzzer: Authorization headers near the token, and anything else.

SCHEMES = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Token", "Digest", "", "Bearer:", "Bearers"]
)
MUTATIONS = st.one_of(
    st.just(TOKEN),
    st.integers(0, len(TOKEN) - 1).map(lambda cut: TOKEN[:cut]),
    st.integers(1, len(TOKEN)).map(lambda cut: TOKEN[cut:]),
    st.integers(0, len(TOKEN) - 1).map(
        lambda at: TOKEN[:at] + TOKEN[at].swapcase() + TOKEN[at + 1 :]
    ),
    st.tuples(st.integers(0, len(TOKEN)), st.sampled_from(string.printable[:94])).map(
        lambda put: TOKEN[: put[0]] + put[1] + TOKEN[put[0] :]
    ),
    st.text(alphabet=string.printable[:95], max_size=40),
    st.just(base64.b64encode(f"admin:{TOKEN}".encode()).decode()),
)
ADDRESSES = itertools.count()
HEADERS = st.builds(
    lambda lead, scheme, gap, credentials, trail: f"{lead}{scheme}{gap}{credentials}{trail}",
    st.sampled_from(["", " "]),
    SCHEMES,
    st.sampled_from([" ", "  ", ""]),
    MUTATIONS,
    st.sampled_from(["", " ", "  "]),
)


def lets_in(header: str) -> bool:
    """The rule: scheme Bearer (any case), then exactly the token."""
    words = header.split(" ")
    words = [word for word in words if word]
    return len(words) == 2 and words[0].lower() == "bearer" and words[1] == TOKEN


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(header=HEADERS)
async def test_fuzz_authorization_headers(
    both_app: QuartWaffle, callback: Callback, header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the token lets a bearer in; a wrong bearer gets 401 and never
    reaches the callback; every other scheme goes to the callback."""
    client = client_of(both_app)
    callback.seen.clear()
    # each example from its own address: failed logins are throttled per address,
    # and the worker's cap on failures from everyone is lifted for the 300 examples
    monkeypatch.setattr(throttle, "MAX_WORKER_FAILURES", 10**9)
    number = next(ADDRESSES)
    peer = {"client": (f"10.1.{number // 250 % 250}.{number % 250 + 1}", 40000)}
    response = await client.get(
        "/waffle/api/settings", headers={"Authorization": header}, scope_base=peer
    )
    page = await client.get("/waffle/", headers={"Authorization": header}, scope_base=peer)
    event(f"status {response.status_code}")
    words = [word for word in header.split(" ") if word]
    bearer = bool(words) and words[0].lower() == "bearer"
    if lets_in(header):
        assert response.status_code == 200
        assert SETTINGS_FORM in await html(page)
        assert callback.seen == []
    elif bearer:
        assert response.status_code == 401
        assert SETTINGS_FORM not in await html(page)
        assert callback.seen == []
    else:
        assert response.status_code == 403  # the callback said no
        assert SETTINGS_FORM not in await html(page)
        assert len(callback.seen) == 2
