"""The admin JSON API: reads, writes, every rejection, auth, secrets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from quart import Quart, Request, g
from quart.typing import TestClientProtocol as Client
from sqlalchemy.exc import OperationalError

from quart_waffle import ConfigurationError, QuartWaffle
from quart_waffle.admin.headers import SECURITY_HEADERS
from quart_waffle.limits import MAX_ACTOR_LENGTH, MAX_BODY_BYTES, MAX_HISTORY_LIMIT
from tests.helpers import ADMIN_TOKEN, make_waffle

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "s3cret"  # API_KEY's default in tests.helpers.CONFS
NEW_SECRET = "n3w-s3cret-value"


async def stored_state(waffle: QuartWaffle) -> tuple[int, int]:
    """(revision in the store, number of history entries): both unchanged on a rejection."""
    await waffle.refresh()
    return waffle.revision, len(await waffle.history(limit=1000))


async def body_of(response: Any) -> Any:
    return await response.get_json()


async def test_list_settings(client: Client, waffle: QuartWaffle) -> None:
    response = await client.get("/waffle/api/settings", headers=AUTH)
    assert response.status_code == 200
    body = await body_of(response)
    assert body["revision"] == waffle.revision
    assert response.headers["ETag"] == f'"{waffle.revision}"'
    items = {item["key"]: item for item in body["settings"]}
    assert items["MAX_ITEMS"]["value"] == 20
    assert items["MAX_ITEMS"]["type"] == "int"
    assert items["MAX_ITEMS"]["min"] == 1
    assert items["THEME"]["choices"] == ["light", "dark"]
    assert items["GREETING"]["description"] == "Home page greeting"
    assert items["API_KEY"]["value"] == "********"
    assert items["API_KEY"]["default"] == "********"
    assert isinstance(items["GREETING"]["revision"], int)


async def test_get_put_one_setting(client: Client, waffle: QuartWaffle) -> None:
    response = await client.get("/waffle/api/settings/MAX_ITEMS", headers=AUTH)
    assert response.status_code == 200
    etag = response.headers["ETag"]
    response = await client.put(
        "/waffle/api/settings/MAX_ITEMS", json={"value": 42}, headers={**AUTH, "If-Match": etag}
    )
    assert response.status_code == 200
    body = await body_of(response)
    assert body["setting"]["value"] == 42
    assert body["revision"] == waffle.revision
    assert response.headers["ETag"] == f'"{body["setting"]["revision"]}"'
    assert waffle.get("MAX_ITEMS") == 42
    [entry] = await waffle.history(key="MAX_ITEMS")
    assert entry.actor == "token"


async def test_patch_is_atomic_and_reset(client: Client, waffle: QuartWaffle) -> None:
    listing = await client.get("/waffle/api/settings", headers=AUTH)
    response = await client.patch(
        "/waffle/api/settings",
        json={"values": {"GREETING": "Hi", "THEME": "dark", "BANNER": {"text": "x"}}},
        headers={**AUTH, "If-Match": listing.headers["ETag"]},
    )
    assert response.status_code == 200
    assert waffle.get("THEME") == "dark"
    assert waffle.get("BANNER") == {"text": "x"}
    response = await client.delete("/waffle/api/settings/THEME", headers=AUTH)
    assert response.status_code == 200
    assert waffle.get("THEME") == "light"
    response = await client.post("/waffle/api/settings/GREETING/reset", headers=AUTH)
    assert response.status_code == 200
    assert (await body_of(response))["setting"]["value"] == "Hello"


REJECTIONS: list[tuple[str, str, str, dict[str, Any], int, str, str]] = [
    # (name, method, path, request kwargs, status, error code, field named)
    ("malformed json", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"data": b'{"value": ', "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_json", "body"),
    ("not utf-8", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"data": b'{"value": "\xff"}', "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_json", "body"),
    ("NaN", "PUT", "/waffle/api/settings/RATE",
     {"data": b'{"value": NaN}', "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_json", "body"),
    ("wrong content type", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"data": b'{"value": 3}', "headers": {"Content-Type": "text/plain"}}, 415,
     "unsupported_media_type", "Content-Type"),
    ("form body", "PATCH", "/waffle/api/settings",
     {"form": {"values": "x"}}, 415, "unsupported_media_type", "Content-Type"),
    ("too large", "PUT", "/waffle/api/settings/GREETING",
     {"json": {"value": "x" * (MAX_BODY_BYTES + 1)}}, 413, "body_too_large", "body"),
    ("wrong type", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"json": {"value": "many"}}, 422, "invalid_value", "MAX_ITEMS"),
    ("bool is not int", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"json": {"value": True}}, 422, "invalid_value", "MAX_ITEMS"),
    ("out of range", "PUT", "/waffle/api/settings/MAX_ITEMS",
     {"json": {"value": 501}}, 422, "invalid_value", "MAX_ITEMS"),
    ("not in choices", "PUT", "/waffle/api/settings/THEME",
     {"json": {"value": "blue"}}, 422, "invalid_value", "THEME"),
    ("missing value", "PUT", "/waffle/api/settings/THEME",
     {"json": {"valu": "dark"}}, 422, "invalid_body", "value"),
    ("body not an object", "PUT", "/waffle/api/settings/THEME",
     {"json": ["dark"]}, 422, "invalid_body", "body"),
    ("unknown key in body", "PATCH", "/waffle/api/settings",
     {"json": {"values": {"THEME": "dark", "NOPE": 1}}}, 422, "invalid_value", "NOPE"),
    ("one bad value", "PATCH", "/waffle/api/settings",
     {"json": {"values": {"THEME": "dark", "MAX_ITEMS": 0}}}, 422, "invalid_value", "MAX_ITEMS"),
    ("empty values", "PATCH", "/waffle/api/settings",
     {"json": {"values": {}}}, 422, "invalid_body", "values"),
    ("unknown key in url", "PUT", "/waffle/api/settings/NOPE",
     {"json": {"value": 1}}, 404, "unknown_setting", "NOPE"),
    ("unknown key reset", "DELETE", "/waffle/api/settings/NOPE", {}, 404, "unknown_setting",
     "NOPE"),
    ("malformed If-Match", "PUT", "/waffle/api/settings/THEME",
     {"json": {"value": "dark"}, "headers": {"If-Match": 'W/"1"'}}, 412, "invalid_if_match",
     "If-Match"),
    ("If-Match list", "PATCH", "/waffle/api/settings",
     {"json": {"values": {"THEME": "dark"}}, "headers": {"If-Match": '"1", "2"'}}, 412,
     "invalid_if_match", "If-Match"),
    ("bad history limit", "GET", "/waffle/api/history?limit=0", {}, 422, "invalid_query",
     "limit"),
    ("bad history before", "GET", "/waffle/api/history?before=-1", {}, 422, "invalid_query",
     "before"),
    ("unicode digit before", "GET", "/waffle/api/history?before=%C2%B2", {}, 422,
     "invalid_query", "before"),
    ("unicode digit limit", "GET", "/waffle/api/history?limit=%D9%A3", {}, 422,
     "invalid_query", "limit"),
    ("unknown history key", "GET", "/waffle/api/history?key=NOPE", {}, 404, "unknown_setting",
     "NOPE"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
async def test_rejections(
    client: Client,
    waffle: QuartWaffle,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    before = await stored_state(waffle)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = await client.open(path, method=method, headers=headers, **kwargs)
    assert response.status_code == status
    error = (await body_of(response))["error"]
    assert error["code"] == code
    assert error["message"]
    assert field in error["fields"]
    assert error["fields"][field]
    assert await stored_state(waffle) == before


async def test_too_large_is_refused_before_reading(client: Client, waffle: QuartWaffle) -> None:
    before = await stored_state(waffle)
    response = await client.put(
        "/waffle/api/settings/GREETING",
        data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Content-Length": "10000000"},
    )
    assert response.status_code == 413
    assert await stored_state(waffle) == before


async def test_chunked_body_over_the_limit_is_refused(client: Client, waffle: QuartWaffle) -> None:
    before = await stored_state(waffle)
    headers = {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    async with client.request(
        "/waffle/api/settings/GREETING", method="PUT", headers=headers
    ) as connection:
        await connection.send(b'{"value": "')
        for _ in range(32):
            await connection.send(b"x" * 64 * 1024)
        await connection.send(b'"}')
        await connection.send_complete()
    response = await connection.as_response()
    assert response.status_code == 413
    assert (await body_of(response))["error"]["code"] == "body_too_large"
    assert await stored_state(waffle) == before


async def test_routing_errors_under_the_prefix_have_the_admin_answer(client: Client) -> None:
    """Wrong methods and unknown paths never reach a view, yet answer as the admin does."""
    for method, path, status, code in [
        ("POST", "/waffle/openapi.json", 405, "method_not_allowed"),
        ("DELETE", "/waffle/api/settings", 405, "method_not_allowed"),
        ("TRACE", "/waffle/api/settings", 405, "method_not_allowed"),
        ("POST", "/waffle/api/nothing/here", 404, "not_found"),
        ("POST", "/waffle/history/THEME", 405, None),
        ("PUT", "/waffle/", 405, None),
        ("GET", "/waffle/nothing/here", 404, None),
    ]:
        options: dict[str, Any] = {"method": method, "headers": AUTH}
        response = await client.open(path, **options)
        assert response.status_code == status, (method, path)
        kind = "text/html" if code is None else "application/json"
        assert response.headers["Content-Type"].startswith(kind), (method, path)
        assert response.headers["X-Frame-Options"] == "DENY", (method, path)
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        if code is not None:
            assert (await body_of(response))["error"]["code"] == code
        if status == 405:
            assert "GET" in response.headers["Allow"]
    redirect = await client.get("/waffle", headers=AUTH)
    assert redirect.headers["X-Frame-Options"] == "DENY"
    elsewhere = await client.post("/not-the-admin", headers=AUTH)
    assert elsewhere.status_code == 404
    assert "X-Frame-Options" not in elsewhere.headers


async def test_security_headers_stay_on_the_admin(sqlite_url: str) -> None:
    """The app's own routes, even one whose name starts like the prefix, get none of them."""
    waffle = make_waffle(sqlite_url, admin_token=TOKEN)
    app = waffle.app
    assert app is not None

    @app.get("/waffleshop")
    async def shop() -> str:
        return "shop"

    async with app.test_app():
        client = app.test_client()
        for path in ("/waffleshop", "/waffleshop/missing", "/"):
            response = await client.get(path)
            for header in SECURITY_HEADERS:
                assert header not in response.headers, (path, header)
        admin = await client.get("/waffle/api/settings", headers=AUTH)
        assert {name: admin.headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS


async def test_limits_agree_everywhere(sqlite_url: str) -> None:
    """The history limit of the API and of its OpenAPI document, and the actor
    length of the callback and of the store, are the same constants."""

    async def authorize(request: Request) -> bool:
        g.waffle_actor = "a" * (MAX_ACTOR_LENGTH * 3)
        return True

    waffle = make_waffle(sqlite_url, authorize=authorize)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        document = await body_of(await client.get("/waffle/openapi.json"))
        [limit] = [
            parameter
            for parameter in document["paths"]["/waffle/api/history"]["get"]["parameters"]
            if parameter["name"] == "limit"
        ]
        assert limit["schema"]["maximum"] == MAX_HISTORY_LIMIT
        assert str(MAX_BODY_BYTES) in str(document["paths"]["/waffle/api/settings"])
        top = await client.get(f"/waffle/api/history?limit={MAX_HISTORY_LIMIT}")
        over = await client.get(f"/waffle/api/history?limit={MAX_HISTORY_LIMIT + 1}")
        assert (top.status_code, over.status_code) == (200, 422)
        response = await client.put(
            "/waffle/api/settings/THEME",
            json={"value": "dark"},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 200
        [entry] = await waffle.history(key="THEME")
        assert entry.actor == "a" * MAX_ACTOR_LENGTH


async def test_unknown_route_is_json_404(client: Client) -> None:
    response = await client.get("/waffle/api/nothing/here", headers=AUTH)
    assert response.status_code == 404
    assert (await body_of(response))["error"]["code"] == "not_found"


async def test_routing_errors_wait_for_authentication(client: Client) -> None:
    """Before authentication a wrong method or an unknown path is answered as
    any other request: 401, with no Allow header listing the route's methods."""
    for method, path in [
        ("TRACE", "/waffle/api/settings"),
        ("DELETE", "/waffle/api/settings"),
        ("POST", "/waffle/openapi.json"),
        ("GET", "/waffle/api/nothing/here"),
        ("PUT", "/waffle/api/nothing"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong-but-long-enough"}):
            options: dict[str, Any] = {"method": method, "headers": headers}
            response = await client.open(path, **options)
            assert response.status_code == 401, (method, path, headers)
            assert "Allow" not in response.headers, (method, path)
            assert (await body_of(response))["error"]["code"] in ("unauthorized", "invalid_token")


async def test_conflicting_writes_one_wins(client: Client, waffle: QuartWaffle) -> None:
    etag = (await client.get("/waffle/api/settings/GREETING", headers=AUTH)).headers["ETag"]
    first = await client.put(
        "/waffle/api/settings/GREETING", json={"value": "A"}, headers={**AUTH, "If-Match": etag}
    )
    before = await stored_state(waffle)
    second = await client.put(
        "/waffle/api/settings/GREETING", json={"value": "B"}, headers={**AUTH, "If-Match": etag}
    )
    assert first.status_code == 200
    assert second.status_code == 409
    error = (await body_of(second))["error"]
    assert error["current"] == {"GREETING": "A"}
    assert error["revisions"] == {"GREETING": waffle.snapshot.revisions["GREETING"]}
    assert "GREETING" in error["fields"]
    assert waffle.get("GREETING") == "A"
    assert await stored_state(waffle) == before
    # Another key changed meanwhile does not conflict with a per-key ETag.
    theme_etag = f'"{waffle.snapshot.revisions["THEME"]}"'
    response = await client.put(
        "/waffle/api/settings/THEME",
        json={"value": "dark"},
        headers={**AUTH, "If-Match": theme_etag},
    )
    assert response.status_code == 200


async def test_concurrent_writes_on_two_workers(database_url: str) -> None:
    """Two admins on two workers send the same If-Match at once: one 200, one 409."""
    workers = [make_waffle(database_url, admin_token=TOKEN) for _ in range(2)]
    apps = [worker.app for worker in workers if worker.app is not None]
    async with apps[0].test_app(), apps[1].test_app():
        etag = f'"{workers[0].snapshot.revisions["MAX_ITEMS"]}"'
        responses = await asyncio.gather(
            *(
                app.test_client().put(
                    "/waffle/api/settings/MAX_ITEMS",
                    json={"value": value},
                    headers={**AUTH, "If-Match": etag},
                )
                for app, value in zip(apps, (7, 8), strict=True)
            )
        )
        assert sorted(response.status_code for response in responses) == [200, 409]
        winner = 7 if responses[0].status_code == 200 else 8
        loser = responses[1] if winner == 7 else responses[0]
        assert (await body_of(loser))["error"]["current"] == {"MAX_ITEMS": winner}
        # The write returned after commit: the other worker finds it in the store at once.
        for worker in workers:
            await worker.refresh()
            assert worker.get("MAX_ITEMS") == winner
        assert len(await workers[0].history(key="MAX_ITEMS")) == 1


async def test_update_returns_after_commit(database_url: str) -> None:
    workers = [make_waffle(database_url, admin_token=TOKEN) for _ in range(2)]
    assert workers[0].app is not None
    assert workers[1].app is not None
    async with workers[0].app.test_app(), workers[1].app.test_app():
        response = (
            await workers[1]
            .app.test_client()
            .put("/waffle/api/settings/GREETING", json={"value": "from worker 1"}, headers=AUTH)
        )
        assert response.status_code == 200
        revision = (await body_of(response))["revision"]
        assert await workers[0].refresh() >= revision
        assert workers[0].get("GREETING") == "from worker 1"


async def test_history_paged_and_filtered(client: Client) -> None:
    for value in (2, 3, 4):
        response = await client.put(
            "/waffle/api/settings/MAX_ITEMS", json={"value": value}, headers=AUTH
        )
        assert response.status_code == 200
    await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=AUTH)
    page = await body_of(
        await client.get("/waffle/api/history?key=MAX_ITEMS&limit=2", headers=AUTH)
    )
    assert [entry["new_value"] for entry in page["entries"]] == [4, 3]
    assert page["entries"][0]["old_value"] == 3
    assert page["entries"][0]["actor"] == "token"
    rest = await body_of(
        await client.get(
            f"/waffle/api/history?key=MAX_ITEMS&limit=2&before={page['next_before']}",
            headers=AUTH,
        )
    )
    assert [entry["new_value"] for entry in rest["entries"]] == [2]
    assert rest["next_before"] is None
    everything = await body_of(await client.get("/waffle/api/history", headers=AUTH))
    assert {entry["key"] for entry in everything["entries"]} == {"MAX_ITEMS", "THEME"}


async def test_history_pages_through_one_revision_of_many_keys(client: Client) -> None:
    """A page may end inside a revision: the next one continues with its other keys."""
    response = await client.patch(
        "/waffle/api/settings",
        json={"values": {"GREETING": "Hi", "THEME": "dark", "MAX_ITEMS": 7}},
        headers=AUTH,
    )
    assert response.status_code == 200
    revision = (await body_of(response))["revision"]
    seen: list[dict[str, Any]] = []
    query = "limit=2"
    for _ in range(3):
        page = await body_of(await client.get(f"/waffle/api/history?{query}", headers=AUTH))
        seen.extend(page["entries"])
        if page["next_before"] is None:
            break
        assert page["next_before"] == page["entries"][-1]["id"]
        query = f"limit=2&before={page['next_before']}"
    assert sorted(entry["key"] for entry in seen) == ["GREETING", "MAX_ITEMS", "THEME"]
    assert {entry["revision"] for entry in seen} == {revision}
    ids = [entry["id"] for entry in seen]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 3


async def test_health(client: Client, waffle: QuartWaffle) -> None:
    import os

    body = await body_of(await client.get("/waffle/api/health", headers=AUTH))
    assert body["pid"] == os.getpid()
    assert body["applied_revision"] == waffle.revision
    assert body["channel"] == "none"


async def test_openapi_document(client: Client) -> None:
    assert (await client.get("/waffle/openapi.json")).status_code == 401
    response = await client.get("/waffle/openapi.json", headers=AUTH)
    assert response.status_code == 200
    document = await body_of(response)
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {"/waffle/api/settings", "/waffle/api/settings/{key}"}
    values = document["paths"]["/waffle/api/settings"]["patch"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["properties"]["values"]["properties"]
    assert values["MAX_ITEMS"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert values["THEME"]["enum"] == ["light", "dark"]
    for operation in document["paths"]["/waffle/api/settings"].values():
        assert {"401", "403", "429", "503"} <= set(operation["responses"])
    assert "s3cret" not in str(document)


async def test_security_headers(client: Client) -> None:
    for headers in (AUTH, {}):
        response = await client.get("/waffle/api/settings", headers=headers)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


async def test_store_unavailable_is_503(
    client: Client,
    waffle: QuartWaffle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE waffle_settings", {"value": NEW_SECRET}, OSError("refused"))

    store = waffle._connected().store
    monkeypatch.setattr(store, "write", unreachable)
    monkeypatch.setattr(store, "history", unreachable)
    response = await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=AUTH)
    assert response.status_code == 503
    error = (await body_of(response))["error"]
    assert error["code"] == "store_unavailable"
    assert "database" in error["message"]
    assert response.headers["Retry-After"]
    assert (await client.get("/waffle/api/history", headers=AUTH)).status_code == 503
    # Reads keep serving this worker's snapshot.
    assert (await client.get("/waffle/api/settings", headers=AUTH)).status_code == 200
    # A client retrying makes no storm: one warning, however many 503s.
    for _ in range(5):
        await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=AUTH)
    warnings = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert NEW_SECRET not in caplog.text


# Auth.


async def test_auth_token_missing_wrong_right(client: Client, waffle: QuartWaffle) -> None:
    before = await stored_state(waffle)
    missing = await client.put("/waffle/api/settings/THEME", json={"value": "dark"})
    wrong = await client.put(
        "/waffle/api/settings/THEME",
        json={"value": "dark"},
        headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"},
    )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization" in (await body_of(response))["error"]["fields"]
    assert (await client.get("/waffle/api/settings")).status_code == 401
    assert (await client.get("/waffle/api/settings/THEME")).status_code == 401
    assert await stored_state(waffle) == before
    right = await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=AUTH)
    assert right.status_code == 200


async def test_no_auth_configured_refuses_everything(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        for method, path in [
            ("GET", "/waffle/api/settings"),
            ("GET", "/waffle/api/settings/API_KEY"),
            ("PUT", "/waffle/api/settings/THEME"),
            ("GET", "/waffle/api/history"),
            ("GET", "/waffle/openapi.json"),
        ]:
            response = await client.open(
                path, method=method, json={"value": "dark"}, headers={"Authorization": "Bearer x"}
            )
            assert response.status_code == 403
            error = (await body_of(response))["error"]
            assert error["code"] == "admin_not_configured"
            assert "WAFFLE_ADMIN_TOKEN" in error["message"]
            assert "authorize" in error["message"]
        assert waffle.get("THEME") == "light"


async def test_admin_can_be_switched_off(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url, admin_prefix="", admin_token=TOKEN)
    assert waffle.app is not None
    async with waffle.app.test_app():
        response = await waffle.app.test_client().get("/waffle/api/settings", headers=AUTH)
        assert response.status_code == 404


@pytest.mark.parametrize(
    ("prefix", "mounted"),
    [("waffle", "/waffle"), ("/a/", "/a"), ("/admin/settings", "/admin/settings"), ("~x", "/~x")],
)
async def test_odd_prefixes_that_work(sqlite_url: str, prefix: str, mounted: str) -> None:
    waffle = make_waffle(sqlite_url, admin_prefix=prefix, admin_token=TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        for path in (f"{mounted}/api/settings", f"{mounted}/", f"{mounted}/nothing"):
            response = await client.get(path, headers=AUTH)
            assert response.status_code in (200, 404), path
            for header, value in SECURITY_HEADERS.items():
                assert response.headers.get(header) == value, (path, header)
        page = await (await client.get(f"{mounted}/")).get_data(as_text=True)
        assert f'href="{mounted}/static/waffle/admin.css"' in page


@pytest.mark.parametrize(
    "prefix", ["/", "//", "//x", "/a//b", "/a?b", "/a#b", "/ä", "/a b", "/%61", "/../x", " /x"]
)
def test_prefixes_that_cannot_work_are_refused_at_start_up(sqlite_url: str, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="WAFFLE_ADMIN_PREFIX") as caught:
        make_waffle(sqlite_url, admin_prefix=prefix, admin_token=TOKEN)
    assert repr(prefix) in str(caught.value)
    assert "'/waffle'" in str(caught.value)


def _callback_waffle(sqlite_url: str, **options: Any) -> QuartWaffle:
    async def authorize(request: Request) -> bool:
        user = request.headers.get("X-User")
        if user == "alice":
            g.waffle_actor = "alice"
            return True
        return user == "anonymous-ok"

    return make_waffle(sqlite_url, authorize=authorize, **options)


async def test_callback_allows_and_denies(sqlite_url: str) -> None:
    waffle = _callback_waffle(sqlite_url)
    app: Quart | None = waffle.app
    assert app is not None
    async with app.test_app():
        client = app.test_client()
        denied = await client.put(
            "/waffle/api/settings/THEME", json={"value": "dark"}, headers={"X-User": "mallory"}
        )
        assert denied.status_code == 403
        assert (await body_of(denied))["error"]["code"] == "forbidden"
        assert waffle.get("THEME") == "light"
        allowed = await client.put(
            "/waffle/api/settings/THEME", json={"value": "dark"}, headers={"X-User": "alice"}
        )
        assert allowed.status_code == 200
        anonymous = await client.put(
            "/waffle/api/settings/THEME",
            json={"value": "light"},
            headers={"X-User": "anonymous-ok"},
        )
        assert anonymous.status_code == 200
        actors = [entry.actor for entry in await waffle.history(key="THEME")]
        assert actors == ["authorize", "alice"]
        cross_site = await client.put(
            "/waffle/api/settings/THEME",
            json={"value": "dark"},
            headers={"X-User": "alice", "Origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
        assert waffle.get("THEME") == "light"


async def test_callback_with_token_either_suffices(sqlite_url: str) -> None:
    waffle = _callback_waffle(sqlite_url, admin_token=TOKEN)
    assert waffle.app is not None
    async with waffle.app.test_app():
        client = waffle.app.test_client()
        assert (await client.get("/waffle/api/settings", headers=AUTH)).status_code == 200
        assert (
            await client.get("/waffle/api/settings", headers={"X-User": "alice"})
        ).status_code == 200
        assert (await client.get("/waffle/api/settings")).status_code == 403
        wrong = await client.get(
            "/waffle/api/settings", headers={"X-User": "alice", "Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401


# Secrets.


async def test_secrets_never_leak(
    client: Client, waffle: QuartWaffle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="quart_waffle")
    caplog.set_level(logging.INFO)
    etag = (await client.get("/waffle/api/settings/API_KEY", headers=AUTH)).headers["ETag"]
    texts: list[str] = []
    response = await client.put(
        "/waffle/api/settings/API_KEY",
        json={"value": NEW_SECRET},
        headers={**AUTH, "If-Match": etag},
    )
    assert response.status_code == 200
    assert waffle.get("API_KEY") == NEW_SECRET
    texts.append(await response.get_data(as_text=True))
    conflicting = await client.put(
        "/waffle/api/settings/API_KEY", json={"value": "other"}, headers={**AUTH, "If-Match": etag}
    )
    assert conflicting.status_code == 409
    assert (await body_of(conflicting))["error"]["current"] == {"API_KEY": "********"}
    texts.append(await conflicting.get_data(as_text=True))
    for path in (
        "/waffle/api/settings",
        "/waffle/api/settings/API_KEY",
        "/waffle/api/history",
        "/waffle/api/history?key=API_KEY",
        "/waffle/openapi.json",
    ):
        response = await client.get(path, headers=AUTH)
        assert response.status_code == 200
        texts.append(await response.get_data(as_text=True))
    reset = await client.delete("/waffle/api/settings/API_KEY", headers=AUTH)
    texts.append(await reset.get_data(as_text=True))
    texts.append(caplog.text)
    for text in texts:
        assert NEW_SECRET not in text
        assert SECRET not in text
    history = await body_of(await client.get("/waffle/api/history?key=API_KEY", headers=AUTH))
    assert [entry["new_value"] for entry in history["entries"]] == ["********", "********"]
