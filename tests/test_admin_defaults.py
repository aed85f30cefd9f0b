"""The admin shows which settings serve their declared default and resets a
setting to it (API and page); a reset key follows the default in the code."""

from __future__ import annotations

import re
from typing import Any

from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, CONFS, make_waffle, serving

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def admin_waffle(database_url: str, confs: dict[str, Any] = CONFS) -> QuartWaffle:
    waffle = make_waffle(database_url, confs=confs, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    return waffle


async def is_default(client: Client, key: str) -> bool:
    body = await (await client.get(f"/waffle/api/settings/{key}", headers=AUTH)).get_json()
    value: bool = body["setting"]["is_default"]
    return value


async def test_api_says_which_values_are_the_default(sqlite_url: str) -> None:
    waffle = admin_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        listing = await (await client.get("/waffle/api/settings", headers=AUTH)).get_json()
        assert all(item["is_default"] for item in listing["settings"])
        changed = await client.put(
            "/waffle/api/settings/MAX_ITEMS", json={"value": 42}, headers=AUTH
        )
        assert (await changed.get_json())["setting"]["is_default"] is False
        assert not await is_default(client, "MAX_ITEMS")
        assert await is_default(client, "THEME")
        reset = await client.delete("/waffle/api/settings/MAX_ITEMS", headers=AUTH)
        body = await reset.get_json()
        assert body["setting"]["is_default"] is True
        assert body["setting"]["value"] == 20
        await client.put("/waffle/api/settings/THEME", json={"value": "dark"}, headers=AUTH)
        reset = await client.post("/waffle/api/settings/THEME/reset", headers=AUTH)
        assert (await reset.get_json())["setting"]["is_default"] is True


async def test_a_key_reset_through_the_admin_follows_a_new_default(sqlite_url: str) -> None:
    """Reset is not "write today's default": after a deploy with another
    default, the key serves the new one."""
    old = admin_waffle(sqlite_url)
    assert old.app is not None
    async with serving(old):
        client = old.app.test_client()
        await client.put("/waffle/api/settings/MAX_ITEMS", json={"value": 42}, headers=AUTH)
        await client.delete("/waffle/api/settings/MAX_ITEMS", headers=AUTH)
    confs = {**CONFS, "MAX_ITEMS": {**CONFS["MAX_ITEMS"], "default": 30}}
    new = admin_waffle(sqlite_url, confs)
    assert new.app is not None
    async with serving(new):
        client = new.app.test_client()
        body = await (await client.get("/waffle/api/settings/MAX_ITEMS", headers=AUTH)).get_json()
        assert body["setting"]["value"] == 30
        assert body["setting"]["is_default"] is True


async def logged_in_page(client: Client) -> str:
    login = await (await client.get("/waffle/")).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    await client.post("/waffle/login", form={"csrf": csrf.group(1), "token": ADMIN_TOKEN})
    page: str = await (await client.get("/waffle/")).get_data(as_text=True)
    assert 'id="settings-form"' in page
    return page


def reset_form(page: str, key: str) -> dict[str, str]:
    """What the reset button of ``key`` posts."""
    assert f'id="reset-{key}"' in page
    form = page[page.index('id="reset-form"') :]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    revision = re.search(r'name="revision" value="([^"]+)"', form)
    assert csrf is not None
    assert revision is not None
    return {"csrf": csrf.group(1), "revision": revision.group(1), "key": key}


async def test_page_shows_defaults_and_resets_one(sqlite_url: str) -> None:
    waffle = admin_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        page = await logged_in_page(client)
        assert 'id="default-MAX_ITEMS"' in page
        assert 'id="reset-MAX_ITEMS"' not in page
        await waffle.update({"MAX_ITEMS": 42, "THEME": "dark"}, actor="ops")
        page = await (await client.get("/waffle/")).get_data(as_text=True)
        assert 'id="default-MAX_ITEMS"' not in page
        assert "default <code>20</code>" in page
        form = reset_form(page, "MAX_ITEMS")
        response = await client.post("/waffle/reset", form=form)
        assert response.status_code == 303
        assert waffle.get("MAX_ITEMS") == 20
        assert waffle.is_default("MAX_ITEMS")
        assert waffle.get("THEME") == "dark"  # only the one key
        [entry, *_] = await waffle.history(key="MAX_ITEMS")
        assert entry.actor == "token"
        page = await (await client.get("/waffle/")).get_data(as_text=True)
        assert 'id="default-MAX_ITEMS"' in page


async def test_page_reset_refusals(sqlite_url: str) -> None:
    waffle = admin_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client = waffle.app.test_client()
        await logged_in_page(client)
        await waffle.update({"THEME": "dark"}, actor="ops")
        form = reset_form(await (await client.get("/waffle/")).get_data(as_text=True), "THEME")
        forged = await client.post("/waffle/reset", form={**form, "csrf": "forged"})
        unknown = await client.post("/waffle/reset", form={**form, "key": "NOPE"})
        assert (forged.status_code, unknown.status_code) == (403, 422)
        await waffle.update({"THEME": "light"}, actor="someone else")
        await waffle.update({"THEME": "dark"}, actor="someone else")
        stale = await client.post("/waffle/reset", form=form)
        assert stale.status_code == 409
        assert "someone else changed THEME" in await stale.get_data(as_text=True)
        assert waffle.get("THEME") == "dark"
        assert not waffle.is_default("THEME")
