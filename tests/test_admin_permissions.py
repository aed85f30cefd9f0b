"""Per-key permissions, a read-only role and named tokens, on the admin API
and page (real SQLite and PostgreSQL): a refused key is a 403 naming it with
nothing stored, each next to the allowed path that works."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from quart import Request, g
from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from quart_waffle.admin import auth
from quart_waffle.admin.tokens import NamedToken
from quart_waffle.errors import ConfigurationError
from tests.helpers import make_waffle, serving_admin
from tests.test_admin_page import csrf_of, form_of, text_of

ALICE = "alice-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
CI = "ci-token-0123456789abcdefghij"
TOKENS = {
    "alice": ALICE,
    "viewer": {"token": VIEWER, "role": "read"},
    "ci": {"token": CI, "keys": ["MAX_*", "THEME", "GREETING"]},
}
Asked = list[tuple[str, frozenset[str]]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(name="asked")
def _asked() -> Asked:
    return []


@pytest.fixture(name="waffle")
async def _waffle(database_url: str, asked: Asked) -> AsyncIterator[QuartWaffle]:
    async def no_greeting(
        request: Request, operation: str, keys: frozenset[str]
    ) -> Collection[str]:
        """The app's rule in these tests: nobody but alice changes GREETING."""
        asked.append((operation, keys))
        if operation == "read" or g.waffle_actor == "token:alice":
            return keys
        return keys - {"GREETING"}

    waffle = make_waffle(database_url, admin_tokens=TOKENS, authorize_keys=no_greeting)
    async with serving_admin(waffle):
        yield waffle


@pytest.fixture(name="client")
def _client(waffle: QuartWaffle) -> Client:
    assert waffle.app is not None
    return waffle.app.test_client()


async def rows(waffle: QuartWaffle) -> int:
    return len(await waffle.history(limit=1000))


async def test_a_refused_key_stores_nothing_of_a_multi_key_write(
    client: Client, waffle: QuartWaffle, asked: Asked
) -> None:
    body = {"values": {"MAX_ITEMS": 7, "GREETING": "Hi"}}
    response = await client.patch("/waffle/api/settings", json=body, headers=bearer(CI))
    assert response.status_code == 403
    refusal = await response.get_json()
    assert refusal["error"]["code"] == "forbidden_keys"
    assert list(refusal["error"]["fields"]) == ["GREETING"]
    assert ("write", frozenset({"MAX_ITEMS", "GREETING"})) in asked
    assert waffle.get("MAX_ITEMS") == 20
    assert await rows(waffle) == 0
    # the token's own patterns refuse RATE before the callback is asked
    response = await client.put(
        "/waffle/api/settings/RATE", json={"value": 2.0}, headers=bearer(CI)
    )
    assert response.status_code == 403
    assert list((await response.get_json())["error"]["fields"]) == ["RATE"]
    assert await rows(waffle) == 0
    # controls: the allowed keys alone, and alice with GREETING
    response = await client.patch(
        "/waffle/api/settings", json={"values": {"MAX_ITEMS": 7}}, headers=bearer(CI)
    )
    assert response.status_code == 200
    response = await client.patch("/waffle/api/settings", json=body, headers=bearer(ALICE))
    assert response.status_code == 200
    assert (waffle.get("MAX_ITEMS"), waffle.get("GREETING")) == (7, "Hi")
    actors = [(entry.key, entry.actor) for entry in await waffle.history(limit=10)]
    assert actors == [("GREETING", "token:alice"), ("MAX_ITEMS", "token:ci")]


async def test_reset_revert_restore_and_apply_ask_for_the_keys_they_put_back(
    client: Client, waffle: QuartWaffle
) -> None:
    changed = await waffle.update({"GREETING": "Hi", "MAX_ITEMS": 9}, actor="ops")
    before = await rows(waffle)
    refused = {
        "/waffle/api/settings/GREETING/reset": None,
        f"/waffle/api/revisions/{changed}/revert": None,
        "/waffle/api/revisions/0/restore": None,
        "/waffle/api/apply": {"settings": {"GREETING": "Yo", "MAX_ITEMS": 9}},
    }
    for path, body in refused.items():
        options: dict[str, Any] = {} if body is None else {"json": body}
        response = await client.post(path, headers=bearer(CI), **options)
        assert response.status_code == 403, path
        assert list((await response.get_json())["error"]["fields"]) == ["GREETING"], path
    assert await rows(waffle) == before
    assert waffle.get("GREETING") == "Hi"
    # controls: an apply that leaves GREETING as it is, and alice's revert
    response = await client.post(
        "/waffle/api/apply",
        json={"settings": {"GREETING": "Hi", "MAX_ITEMS": 11}},
        headers=bearer(CI),
    )
    assert response.status_code == 200
    assert waffle.get("MAX_ITEMS") == 11
    response = await client.post(
        f"/waffle/api/revisions/{changed}/revert", json={"force": True}, headers=bearer(ALICE)
    )
    assert response.status_code == 200, await response.get_json()
    assert waffle.get("GREETING") == "Hello"


async def test_a_read_only_token_reads_everything_and_changes_nothing(
    client: Client, waffle: QuartWaffle
) -> None:
    await waffle.update({"API_KEY": "n3w-s3cret"}, actor="ops")
    for path in ("/waffle/api/settings", "/waffle/api/history", "/waffle/api/export"):
        response = await client.get(path, headers=bearer(VIEWER))
        assert response.status_code == 200, path
        assert "n3w-s3cret" not in await text_of(response)
    listed = await (await client.get("/waffle/api/settings", headers=bearer(VIEWER))).get_json()
    assert len(listed["settings"]) == len(waffle.declarations)
    before = await rows(waffle)
    writes = [
        ("PUT", "/waffle/api/settings/MAX_ITEMS", {"value": 5}),
        ("PATCH", "/waffle/api/settings", {"values": {"MAX_ITEMS": 5}}),
        ("POST", "/waffle/api/settings/MAX_ITEMS/reset", None),
        ("POST", "/waffle/api/revisions/1/revert", None),
        ("POST", "/waffle/api/apply", {"settings": {"MAX_ITEMS": 5}, "dry_run": True}),
    ]
    for method, path, body in writes:
        options: dict[str, Any] = {} if body is None else {"json": body}
        response = await client.open(path, method=method, headers=bearer(VIEWER), **options)
        assert response.status_code == 403, path
        assert (await response.get_json())["error"]["code"] == "read_only"
    assert await rows(waffle) == before
    assert waffle.get("MAX_ITEMS") == 20
    # control: the same write with an admin token
    response = await client.put(
        "/waffle/api/settings/MAX_ITEMS", json={"value": 5}, headers=bearer(ALICE)
    )
    assert response.status_code == 200


async def test_scheduling_asks_for_the_keys_it_would_change(
    client: Client, waffle: QuartWaffle
) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"values": {"MAX_ITEMS": 3, "GREETING": "Later"}, "at": at}
    response = await client.post("/waffle/api/schedule", json=body, headers=bearer(CI))
    assert response.status_code == 403
    assert list((await response.get_json())["error"]["fields"]) == ["GREETING"]
    assert await waffle.scheduled() == []
    response = await client.post("/waffle/api/schedule", json=body, headers=bearer(ALICE))
    assert response.status_code == 201
    entry = (await response.get_json())["id"]
    response = await client.delete(f"/waffle/api/schedule/{entry}", headers=bearer(CI))
    assert response.status_code == 403
    assert (await waffle.scheduled())[0].state == "pending"
    response = await client.delete(f"/waffle/api/schedule/{entry}", headers=bearer(ALICE))
    assert response.status_code == 200


async def test_a_token_with_keys_reads_only_those(client: Client, waffle: QuartWaffle) -> None:
    await waffle.update({"RATE": 2.5, "MAX_ITEMS": 8}, actor="ops")
    listed = await (await client.get("/waffle/api/settings", headers=bearer(CI))).get_json()
    assert {item["key"] for item in listed["settings"]} == {"MAX_ITEMS", "THEME", "GREETING"}
    history = await (await client.get("/waffle/api/history", headers=bearer(CI))).get_json()
    assert [entry["key"] for entry in history["entries"]] == ["MAX_ITEMS"]
    exported = await (await client.get("/waffle/api/export", headers=bearer(CI))).get_json()
    assert set(exported["settings"]) == {"MAX_ITEMS", "THEME", "GREETING"}
    response = await client.get("/waffle/api/settings/RATE", headers=bearer(CI))
    assert response.status_code == 403
    assert list((await response.get_json())["error"]["fields"]) == ["RATE"]
    # control: an unrestricted token sees RATE
    response = await client.get("/waffle/api/settings/RATE", headers=bearer(ALICE))
    assert response.status_code == 200


async def test_named_tokens_read_the_metrics(client: Client) -> None:
    response = await client.get("/waffle/metrics", headers=bearer(VIEWER))
    assert response.status_code == 200
    response = await client.get("/waffle/metrics", headers=bearer(VIEWER + "x"))
    assert response.status_code == 401


async def login(client: Client, token: str) -> str:
    login_page = await text_of(await client.get("/waffle/"))
    response = await client.post(
        "/waffle/login", form={"csrf": csrf_of(login_page), "token": token}
    )
    assert response.status_code == 303
    page = await text_of(await client.get("/waffle/"))
    assert 'id="settings-form"' in page
    return csrf_of(page)


async def test_the_page_logs_in_named_tokens_and_applies_their_rules(
    waffle: QuartWaffle,
) -> None:
    assert waffle.app is not None
    viewer, ci, alice = (waffle.app.test_client() for _ in range(3))
    csrf = await login(viewer, VIEWER)
    assert "Signed in as token:viewer, read-only" in await text_of(await viewer.get("/waffle/"))
    response = await viewer.post("/waffle/save", form=form_of(waffle, csrf, MAX_ITEMS="30"))
    assert response.status_code == 403
    assert "may read the settings but not change them" in await text_of(response)
    response = await viewer.post("/waffle/reset", form={"csrf": csrf, "key": "MAX_ITEMS"})
    assert response.status_code == 403
    assert await rows(waffle) == 0

    csrf = await login(ci, CI)
    form = form_of(waffle, csrf, MAX_ITEMS="30", GREETING="Hey")
    response = await ci.post("/waffle/save", form=form)
    assert response.status_code == 403
    assert "GREETING" in await text_of(response)
    assert await rows(waffle) == 0
    assert waffle.get("MAX_ITEMS") == 20
    response = await ci.post("/waffle/save", form=form_of(waffle, csrf, MAX_ITEMS="30"))
    assert response.status_code == 303
    assert waffle.get("MAX_ITEMS") == 30

    csrf = await login(alice, ALICE)
    assert "read-only" not in await text_of(await alice.get("/waffle/"))
    response = await alice.post("/waffle/save", form=form_of(waffle, csrf, GREETING="Hey"))
    assert response.status_code == 303
    assert [entry.actor for entry in await waffle.history()] == ["token:alice", "token:ci"]


@pytest.mark.parametrize(
    ("tokens", "named"),
    [
        ({"bob": "short"}, "WAFFLE_ADMIN_TOKENS['bob']"),
        ({"bob": "a" * 40}, "WAFFLE_ADMIN_TOKENS['bob']"),
        ({"bob": {"token": ALICE, "role": "root"}}, "role must be one of admin, read"),
        ({"bob": {"token": ALICE, "keys": "MAX_*"}}, "keys must be a list"),
        ({"bob": {"secret": ALICE}}, "unknown members secret"),
        ({"bad name": ALICE}, "the name 'bad name'"),
        ({"a": ALICE, "b": ALICE}, "two names share one token"),
        ("{not json", "is not JSON"),
        (["alice"], "must be a mapping"),
    ],
)
def test_a_weak_or_malformed_token_table_is_refused_at_start(
    sqlite_url: str, tokens: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_waffle(sqlite_url, admin_tokens=tokens)
    assert "WAFFLE_ADMIN_TOKENS" in str(refused.value)
    assert named in str(refused.value)
    assert ALICE not in str(refused.value)


def test_the_environment_form_is_json(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFFLE_ADMIN_TOKENS", json.dumps({"ci": {"token": CI, "role": "read"}}))
    waffle = make_waffle(sqlite_url)
    assert waffle.config is not None
    assert waffle.config.admin_tokens is not None
    (token,) = waffle.config.admin_tokens
    assert (token.actor, token.role, token.keys) == ("token:ci", "read", None)
    assert CI not in repr(token)


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return given == expected

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens = [NamedToken("a", ALICE), NamedToken("c", CI)]
    assert auth.matching(ALICE, tokens) == tokens[0]
    assert len(compared) == 2  # no early exit once found
    assert auth.matching("wrong", tokens) is None


async def test_a_plan_is_checked_as_the_apply_it_shows(client: Client, waffle: QuartWaffle) -> None:
    """A dry run asks for the keys it would change, a secret always counts
    as changed (so no guess is confirmed) and "unchanged" lists only the
    keys the token may read; the page's Plan button likewise."""
    await waffle.update({"RATE": 2.5}, actor="ops")
    for settings in ({"GREETING": "Yo"}, {"API_KEY": "s3cret"}, {"API_KEY": "wrong"}):
        body = {"settings": settings, "dry_run": True}
        response = await client.post("/waffle/api/apply", json=body, headers=bearer(CI))
        assert response.status_code == 403, settings
        assert list((await response.get_json())["error"]["fields"]) == list(settings)
    body = {"settings": {"MAX_ITEMS": 5, "RATE": 2.5}, "dry_run": True}
    response = await client.post("/waffle/api/apply", json=body, headers=bearer(CI))
    assert response.status_code == 200
    plan = await response.get_json()
    assert ([c["key"] for c in plan["changes"]], plan["unchanged"]) == (["MAX_ITEMS"], [])
    # control: alice reads RATE, and sees the secret as one to write whatever its value
    body = {"settings": {"RATE": 2.5, "API_KEY": "s3cret"}, "dry_run": True}
    plan = await (
        await client.post("/waffle/api/apply", json=body, headers=bearer(ALICE))
    ).get_json()
    assert plan["unchanged"] == ["RATE"]
    assert plan["changes"] == [{"key": "API_KEY", "old": "********", "new": "********"}]

    assert waffle.app is not None
    viewer, ci = waffle.app.test_client(), waffle.app.test_client()
    csrf = await login(viewer, VIEWER)
    form = {"csrf": csrf, "settings": '{"MAX_ITEMS": 5}', "action": "plan"}
    response = await viewer.post("/waffle/promote", form=form)
    assert response.status_code == 403
    assert "may read the settings but not change them" in await text_of(response)
    csrf = await login(ci, CI)
    form = {"csrf": csrf, "settings": '{"API_KEY": "s3cret"}', "action": "plan"}
    response = await ci.post("/waffle/promote", form=form)
    assert response.status_code == 403
    assert "API_KEY" in await text_of(response)
    form["settings"] = '{"MAX_ITEMS": 5, "RATE": 2.5}'
    response = await ci.post("/waffle/promote", form=form)
    assert response.status_code == 200
    assert "0 unchanged." in await text_of(response)  # RATE, which ci may not read
    assert await rows(waffle) == 1


def controls(html: str) -> dict[str, dict[str, str | None]]:
    """The attributes of every element of ``html`` that has an id, by id."""
    found: dict[str, dict[str, str | None]] = {}

    class Reader(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            attributes = dict(attrs)
            if attributes.get("id"):
                found[str(attributes["id"])] = attributes

    Reader().feed(html)
    return found


async def drawn(client: Client, path: str) -> dict[str, dict[str, str | None]]:
    response = await client.get(path)
    assert response.status_code == 200, path
    return controls(await text_of(response))


async def test_the_page_draws_write_controls_only_for_what_the_user_may_do(
    waffle: QuartWaffle,
) -> None:
    both = await waffle.update({"MAX_ITEMS": 9, "GREETING": "Hi"}, actor="ops")
    one = await waffle.update({"MAX_ITEMS": 10}, actor="ops")
    assert waffle.app is not None
    viewer, ci, alice = (waffle.app.test_client() for _ in range(3))

    await login(viewer, VIEWER)
    page = await drawn(viewer, "/waffle/")
    assert all("disabled" in page[f"value-{key}"] for key in waffle.declarations)
    assert "disabled" in page["save"]
    assert not [key for key in waffle.declarations if f"reset-{key}" in page]
    history = await drawn(viewer, "/waffle/history")
    assert not [name for name in history if name.startswith(("revert-", "restore-"))]
    assert "disabled" in (await drawn(viewer, "/waffle/promote"))["plan-button"]
    assert "disabled" in (await drawn(viewer, "/waffle/schedule"))["schedule-fields"]

    await login(ci, CI)  # MAX_*, THEME, GREETING; authorize_keys refuses GREETING but to alice
    page = await drawn(ci, "/waffle/")
    assert "disabled" not in page["value-MAX_ITEMS"]
    assert "disabled" in page["value-GREETING"]
    assert "disabled" not in page["save"]
    assert ("reset-MAX_ITEMS" in page, "reset-GREETING" in page) == (True, False)
    history = await drawn(ci, "/waffle/history")
    assert (f"revert-{one}" in history, f"revert-{both}" in history) == (True, False)
    assert f"restore-{both}" in history
    assert "disabled" not in (await drawn(ci, "/waffle/schedule"))["schedule-fields"]

    await login(alice, ALICE)  # control: alice may do everything
    page = await drawn(alice, "/waffle/")
    assert not [key for key in waffle.declarations if "disabled" in page[f"value-{key}"]]
    assert ("reset-GREETING" in page, "disabled" in page["save"]) == (True, False)
    assert f"revert-{both}" in await drawn(alice, "/waffle/history")
    assert "disabled" not in (await drawn(alice, "/waffle/promote"))["plan-button"]


async def test_the_server_refuses_a_forged_post_of_a_control_not_drawn(
    waffle: QuartWaffle,
) -> None:
    """Hiding the buttons is a courtesy: a read-only user posting the forms
    anyway gets 403 for each, and nothing is stored or scheduled."""
    changed = await waffle.update({"MAX_ITEMS": 9, "GREETING": "Hi"}, actor="ops")
    before = await rows(waffle)
    assert waffle.app is not None
    viewer, ci = waffle.app.test_client(), waffle.app.test_client()
    csrf = await login(viewer, VIEWER)
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    forged = {
        "/waffle/save": form_of(waffle, csrf, MAX_ITEMS="30"),
        "/waffle/reset": {"csrf": csrf, "key": "MAX_ITEMS", "revision": str(changed)},
        "/waffle/revert": {"csrf": csrf, "revision": str(changed), "force": "1"},
        "/waffle/restore": {"csrf": csrf, "revision": "0"},
        "/waffle/promote": {"csrf": csrf, "settings": '{"MAX_ITEMS": 5}', "action": "apply"},
        "/waffle/schedule": {"csrf": csrf, "values": "MAX_ITEMS=5", "at": at},
    }
    for path, form in forged.items():
        response = await viewer.post(path, form=form)
        assert response.status_code == 403, path
        assert "may read the settings but not change them" in await text_of(response), path
    csrf = await login(ci, CI)
    response = await ci.post("/waffle/save", form=form_of(waffle, csrf, GREETING="Forged"))
    assert response.status_code == 403
    assert await rows(waffle) == before
    assert (waffle.get("MAX_ITEMS"), waffle.get("GREETING")) == (9, "Hi")
    assert await waffle.scheduled() == []


async def test_an_authorize_callback_that_refuses_writes_draws_none(sqlite_url: str) -> None:
    async def anyone(request: Request) -> bool:
        return True

    async def reads_only(request: Request, operation: str, keys: frozenset[str]) -> bool:
        return operation == "read"

    waffle = make_waffle(sqlite_url, authorize=anyone, authorize_keys=reads_only)
    async with serving_admin(waffle):
        assert waffle.app is not None
        client = waffle.app.test_client()
        page = await drawn(client, "/waffle/")
        assert "disabled" in page["save"]
        assert all("disabled" in page[f"value-{key}"] for key in waffle.declarations)
        csrf = csrf_of(await text_of(await client.get("/waffle/")))
        response = await client.post("/waffle/save", form=form_of(waffle, csrf, THEME="dark"))
        assert response.status_code == 403
        assert await waffle.history() == []
