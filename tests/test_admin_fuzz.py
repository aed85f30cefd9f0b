"""Property-based fuzzing of the admin API and page: no input gives a 5xx,
and no rejection stores anything."""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, CONFS
from tests.test_admin_page import csrf_of

TOKEN = ADMIN_TOKEN
HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ' "*,/-=;', max_size=30)
# "²".isdigit() is true but int("²") raises; other scripts' digits pass both.
OTHER_DIGITS = (
    "²³¹①"
    "\N{ARABIC-INDIC DIGIT ONE}\N{DEVANAGARI DIGIT ZERO}\N{MATHEMATICAL DOUBLE-STRUCK DIGIT ONE}"
)
NUMBER_TEXT = st.one_of(
    st.sampled_from(["²", "12³", "¹⁰", "①", *OTHER_DIGITS[4:], "Ⅻ", "½", "007", "1e3"]),
    st.integers(-5, 10**20).map(str),
    st.text(alphabet="0123456789" + OTHER_DIGITS, min_size=1, max_size=4),
    st.text(alphabet="0123456789²½Ⅻ-+ .e_", max_size=20),
    st.text(max_size=8),
)
KEYS = st.one_of(
    st.sampled_from(sorted(CONFS)),
    st.sampled_from(sorted(CONFS)),
    st.sampled_from(sorted(CONFS)),
    st.text(alphabet=string.ascii_letters + string.digits + "_.-~ %", min_size=1, max_size=20),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["light", "dark", "Hello", 0, 1, 500, 501, -1, 1.5]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    st.builds(lambda value: {"value": value}, JSON_VALUES),
    st.builds(
        lambda values: {"values": values},
        st.dictionaries(KEYS, JSON_VALUES, max_size=4),
    ),
    JSON_VALUES,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One request to the admin API: method, path, headers and body."""
    key = quote(draw(KEYS), safe="")
    number = quote(draw(NUMBER_TEXT), safe="")
    method, path = draw(
        st.sampled_from(
            [
                ("GET", "/waffle/api/settings"),
                ("PATCH", "/waffle/api/settings"),
                ("GET", f"/waffle/api/settings/{key}"),
                ("PUT", f"/waffle/api/settings/{key}"),
                ("DELETE", f"/waffle/api/settings/{key}"),
                ("POST", f"/waffle/api/settings/{key}/reset"),
                ("GET", f"/waffle/api/history?key={key}&limit={draw(HEADER_TEXT)}"),
                ("GET", f"/waffle/api/history?before={number}"),
                ("GET", f"/waffle/api/history?before={number}"),
                ("GET", f"/waffle/api/history?key={key}&limit={number}"),
                ("GET", "/waffle/api/health"),
            ]
        )
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if draw(st.booleans()):
        headers["If-Match"] = draw(
            st.one_of(HEADER_TEXT, st.integers(0, 50).map(lambda n: f'"{n}"'))
        )
    content_type = draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None])
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    raw: bytes = draw(
        st.one_of(
            BODIES.map(lambda body: json.dumps(body).encode()),
            st.binary(max_size=64),
            st.just(b"[" * 5000),
        )
    )
    return {"method": method, "path": path, "headers": headers, "data": raw}


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_fuzz_api_never_fails_and_rejections_store_nothing(
    client: Client, waffle: QuartWaffle, request: dict[str, Any]
) -> None:
    await waffle.refresh()
    before = (waffle.revision, len(await waffle.history(limit=1000)))
    options = dict(request)
    response = await client.open(options.pop("path"), **options)
    event(f"status {response.status_code}")
    assert response.status_code < 500, await response.get_data(as_text=True)
    if response.status_code >= 400:
        body = await response.get_json()
        assert set(body["error"]) >= {"code", "message", "fields"}
        await waffle.refresh()
        assert (waffle.revision, len(await waffle.history(limit=1000))) == before


@st.composite
def page_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    """One request to the page: method, path, and the form fields to change."""
    key = quote(draw(KEYS), safe="")
    before = quote(draw(NUMBER_TEXT), safe="")
    saved = quote(draw(NUMBER_TEXT), safe="")
    method, path = draw(
        st.sampled_from(
            [
                ("POST", "/waffle/save"),
                ("POST", "/waffle/save"),
                ("POST", "/waffle/reset"),
                ("POST", "/waffle/logout"),
                ("GET", f"/waffle/history/{key}?before={before}"),
                ("GET", f"/waffle/?saved={saved}"),
            ]
        )
    )
    fields = draw(
        st.dictionaries(
            st.sampled_from(
                ["revision", "key"]
                + [f"{kind}-{name}" for kind in ("value", "original") for name in sorted(CONFS)]
            ),
            st.one_of(NUMBER_TEXT, st.text(max_size=20), KEYS),
            max_size=4,
        )
    )
    return method, path, fields


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=page_requests())
async def test_fuzz_page_never_fails(
    client: Client, waffle: QuartWaffle, request: tuple[str, str, dict[str, str]]
) -> None:
    method, path, fields = request
    page = await client.get("/waffle/")
    csrf = csrf_of(await page.get_data(as_text=True))
    if "Log in" in await page.get_data(as_text=True):
        login = await client.post("/waffle/login", form={"csrf": csrf, "token": TOKEN})
        assert login.status_code == 303
        page = await client.get("/waffle/")
        csrf = csrf_of(await page.get_data(as_text=True))
    if method == "GET":
        response = await client.get(path)
    else:
        form = {"csrf": csrf, "revision": str(waffle.revision), **fields}
        response = await client.post(path, form=form)
    event(f"status {response.status_code}")
    assert response.status_code < 500, await response.get_data(as_text=True)
