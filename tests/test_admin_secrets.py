"""Secrets through the admin: a secret's value, default and choices never
appear in any API body, OpenAPI document, error message, 409 body, PATCH
answer, history entry (also of keys no longer declared) or page."""

from __future__ import annotations

import re
from typing import Any

from quart.typing import TestClientProtocol as Client

from quart_waffle import QuartWaffle
from tests.helpers import ADMIN_TOKEN, CONFS, make_waffle, serving
from tests.test_admin_page import form_of, logged_in

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLAN = {"default": "gold-plan-x", "choices": ["gold-plan-x", "silver-plan-y"], "secret": True}
HIDDEN = ("gold-plan-x", "silver-plan-y", "s3cret", "retired-secret-z")
SECRET_CONFS = {**CONFS, "PLAN": PLAN}


def secret_waffle(database_url: str, confs: dict[str, Any] = SECRET_CONFS) -> QuartWaffle:
    waffle = make_waffle(database_url, confs=confs, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    waffle.app.secret_key = "test-secret-key"
    return waffle


async def shown(response: Any) -> str:
    body: str = await response.get_data(as_text=True)
    return body + "".join(f"\n{name}: {value}" for name, value in response.headers.items())


def assert_hidden(text: str, where: object) -> None:
    for secret in HIDDEN:
        assert secret not in text, (where, secret)


async def test_a_secrets_choices_and_default_are_never_shown(sqlite_url: str) -> None:
    waffle = secret_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client: Client = waffle.app.test_client()
        texts: list[tuple[object, str]] = []
        for path in (
            "/waffle/api/settings",
            "/waffle/api/settings/PLAN",
            "/waffle/openapi.json",
            "/waffle/api/history",
            "/waffle/api/history?key=PLAN",
        ):
            response = await client.get(path, headers=AUTH)
            assert response.status_code == 200, path
            texts.append((path, await shown(response)))
        listing = await (await client.get("/waffle/api/settings/PLAN", headers=AUTH)).get_json()
        assert listing["setting"]["choices"] is None
        assert listing["setting"]["default"] == "********"
        # A value outside the choices: the reason does not list them.
        for method, path, body in (
            ("PUT", "/waffle/api/settings/PLAN", {"value": "bronze"}),
            ("PATCH", "/waffle/api/settings", {"values": {"PLAN": "bronze", "THEME": "x"}}),
        ):
            response = await client.open(path, method=method, json=body, headers=AUTH)
            assert response.status_code == 422
            error = (await response.get_json())["error"]
            assert error["fields"]["PLAN"] == "must be one of the allowed values"
            texts.append((method, await shown(response)))
        # PATCH answers and 409 bodies mask the value written.
        etag = (await client.get("/waffle/api/settings", headers=AUTH)).headers["ETag"]
        patched = await client.patch(
            "/waffle/api/settings",
            json={"values": {"PLAN": "silver-plan-y", "API_KEY": "retired-secret-z"}},
            headers={**AUTH, "If-Match": etag},
        )
        assert patched.status_code == 200
        items = {item["key"]: item for item in (await patched.get_json())["settings"]}
        assert items["PLAN"]["value"] == items["API_KEY"]["value"] == "********"
        texts.append(("PATCH", await shown(patched)))
        conflict = await client.patch(
            "/waffle/api/settings",
            json={"values": {"PLAN": "gold-plan-x"}},
            headers={**AUTH, "If-Match": etag},
        )
        assert conflict.status_code == 409
        assert (await conflict.get_json())["error"]["current"] == {"PLAN": "********"}
        texts.append(("409", await shown(conflict)))
        reset = await client.post("/waffle/api/settings/PLAN/reset", headers=AUTH)
        assert reset.status_code == 200
        texts.append(("reset", await shown(reset)))
        history = await client.get("/waffle/api/history?key=PLAN", headers=AUTH)
        texts.append(("history", await shown(history)))
        # The page: the select's options are not drawn for a secret.
        page = await client.get("/waffle/")
        login = re.search(r'name="csrf" value="([^"]+)"', await page.get_data(as_text=True))
        assert login is not None
        await client.post("/waffle/login", form={"csrf": login.group(1), "token": ADMIN_TOKEN})
        settings_page = await client.get("/waffle/")
        assert 'id="settings-form"' in await settings_page.get_data(as_text=True)
        texts.append(("page", await shown(settings_page)))
        for key in ("PLAN", "API_KEY"):
            texts.append((key, await shown(await client.get(f"/waffle/history/{key}"))))
        for where, text in texts:
            assert_hidden(text, where)


async def test_history_of_keys_no_longer_declared_is_masked(sqlite_url: str) -> None:
    before = secret_waffle(sqlite_url)
    async with serving(before):
        await before.update({"PLAN": "silver-plan-y", "GREETING": "Hi"}, actor="ops")
    after = secret_waffle(sqlite_url, confs=CONFS)  # PLAN was removed from the code
    assert after.app is not None
    async with serving(after):
        client = after.app.test_client()
        response = await client.get("/waffle/api/history", headers=AUTH)
        entries = {entry["key"]: entry for entry in (await response.get_json())["entries"]}
        assert entries["PLAN"]["new_value"] == "********"
        assert entries["GREETING"]["new_value"] == "Hi"
        assert_hidden(await shown(response), "history")


async def test_the_mask_written_back_is_refused_and_the_secret_kept(sqlite_url: str) -> None:
    waffle = secret_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client: Client = waffle.app.test_client()
        # read everything, edit one key, send it all back: the mask must not become the secret
        listing = await (await client.get("/waffle/api/settings", headers=AUTH)).get_json()
        values = {item["key"]: item["value"] for item in listing["settings"]}
        values["THEME"] = "dark"
        for method, path, body in (
            ("PATCH", "/waffle/api/settings", {"values": values}),
            ("PUT", "/waffle/api/settings/API_KEY", {"value": "********"}),
        ):
            response = await client.open(path, method=method, json=body, headers=AUTH)
            assert response.status_code == 422, method
            fields = (await response.get_json())["error"]["fields"]
            assert fields["API_KEY"] == "the mask is not a value; omit the key to keep it"
        assert waffle.snapshot.values["API_KEY"] == "s3cret"
        assert waffle.snapshot.values["THEME"] == "light"
        # the page: typing the mask into a secret's input is refused the same way
        page = await client.get("/waffle/")
        login = re.search(r'name="csrf" value="([^"]+)"', await page.get_data(as_text=True))
        assert login is not None
        await client.post("/waffle/login", form={"csrf": login.group(1), "token": ADMIN_TOKEN})
        form_page = await (await client.get("/waffle/")).get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form_page)
        revision = re.search(r'name="revision" value="(\d+)"', form_page)
        assert csrf is not None
        assert revision is not None
        saved = await client.post(
            "/waffle/save",
            form={
                "csrf": csrf.group(1),
                "revision": revision.group(1),
                "value-API_KEY": "********",
                "value-THEME": "dark",
            },
        )
        assert saved.status_code == 422
        assert "the mask is not a value" in await saved.get_data(as_text=True)
        assert waffle.snapshot.values["API_KEY"] == "s3cret"
        assert waffle.snapshot.values["THEME"] == "light"


def pin_schemas(document: Any) -> Any:
    """Every schema of PIN in an OpenAPI document."""
    if isinstance(document, dict):
        for name, member in document.items():
            if name == "properties" and isinstance(member, dict) and "PIN" in member:
                yield member["PIN"]
            yield from pin_schemas(member)
    elif isinstance(document, list):
        for member in document:
            yield from pin_schemas(member)


async def test_a_secrets_choices_and_bounds_have_no_oracle(sqlite_url: str) -> None:
    pin = {"default": 4242, "min": 1000, "max": 9999, "secret": True}
    waffle = secret_waffle(sqlite_url, confs={**SECRET_CONFS, "PIN": pin})
    assert waffle.app is not None
    async with serving(waffle):
        client: Client = waffle.app.test_client()
        # the bounds are not shown: API, OpenAPI, the page, the reason of a refusal
        item = (await (await client.get("/waffle/api/settings/PIN", headers=AUTH)).get_json())[
            "setting"
        ]
        assert (item["min"], item["max"]) == (None, None)
        openapi = await (await client.get("/waffle/openapi.json", headers=AUTH)).get_json()
        schemas = list(pin_schemas(openapi))
        assert schemas
        assert all("minimum" not in schema and "maximum" not in schema for schema in schemas)
        refused = await client.put("/waffle/api/settings/PIN", json={"value": 1}, headers=AUTH)
        assert (await refused.get_json())["error"]["fields"] == {
            "PIN": "must be within the allowed range"
        }
        # a stale If-Match is answered 409 whether or not the value is among the choices
        stale = (await client.get("/waffle/api/settings/PLAN", headers=AUTH)).headers["ETag"]
        await waffle.update({"PLAN": "silver-plan-y"}, actor="ops")
        for value in ("gold-plan-x", "bronze", 7):
            for method, path, body in (
                ("PUT", "/waffle/api/settings/PLAN", {"value": value}),
                ("PATCH", "/waffle/api/settings", {"values": {"PLAN": value}}),
            ):
                response = await client.open(
                    path, method=method, json=body, headers={**AUTH, "If-Match": stale}
                )
                assert response.status_code == 409, (method, value)
                assert (await response.get_json())["error"]["current"] == {"PLAN": "********"}
        assert waffle.snapshot.values["PLAN"] == "silver-plan-y"
        page = await client.get("/waffle/")
        login = re.search(r'name="csrf" value="([^"]+)"', await page.get_data(as_text=True))
        assert login is not None
        await client.post("/waffle/login", form={"csrf": login.group(1), "token": ADMIN_TOKEN})
        text = await (await client.get("/waffle/")).get_data(as_text=True)
        assert "1000" not in text
        assert "9999" not in text
        # the page alike: a form older than the secret's change is 409 whatever it holds
        csrf = re.search(r'name="csrf" value="([^"]+)"', text)
        assert csrf is not None
        for value in ("gold-plan-x", "bronze"):
            form = {"csrf": csrf.group(1), "revision": stale.strip('"'), "value-PLAN": value}
            saved = await client.post("/waffle/save", form=form)
            assert saved.status_code == 409, value
        assert waffle.snapshot.values["PLAN"] == "silver-plan-y"


async def test_a_secret_write_makes_a_revision_whether_or_not_it_guessed_right(
    sqlite_url: str,
) -> None:
    """Every write path (Python, PUT, PATCH, the page's save, an apply)
    answers a write of the stored secret as one of another value: one new
    revision, one history entry, masked; nothing tells the guess was right."""
    waffle = secret_waffle(sqlite_url)
    assert waffle.app is not None
    async with serving(waffle):
        client: Client = waffle.app.test_client()
        csrf = await logged_in(client)
        await waffle.update({"API_KEY": "s3cret"})  # stored, not only the default

        async def python(value: str) -> int:
            return await waffle.update({"API_KEY": value}, actor="ops")

        async def api(method: str, path: str, body: dict[str, Any]) -> Any:
            response = await client.open(path, method=method, json=body, headers=AUTH)
            assert response.status_code == 200, await response.get_data(as_text=True)
            return await response.get_json()

        async def put(value: str) -> int:
            answer = await api("PUT", "/waffle/api/settings/API_KEY", {"value": value})
            assert answer["setting"]["value"] == "********"
            return int(answer["revision"])

        async def patch(value: str) -> int:
            answer = await api("PATCH", "/waffle/api/settings", {"values": {"API_KEY": value}})
            return int(answer["revision"])

        async def apply(value: str) -> int:
            answer = await api("POST", "/waffle/api/apply", {"settings": {"API_KEY": value}})
            assert answer["changes"] == [{"key": "API_KEY", "old": "********", "new": "********"}]
            return int(answer["applied_revision"])

        async def page(value: str) -> int:
            saved = await client.post("/waffle/save", form=form_of(waffle, csrf, API_KEY=value))
            assert saved.status_code == 303
            found = re.search(r"saved=(\d+)", saved.headers["Location"])
            assert found is not None
            return int(found.group(1))

        for number, write in enumerate((python, put, patch, apply, page)):
            for value in (waffle.get("API_KEY"), f"another-secret-{number}"):
                before = waffle.revision
                assert await write(value) == before + 1, (write.__name__, value)
                (entry,) = await waffle.history(revision=before + 1)
                assert (entry.key, entry.old_value, entry.new_value) == (
                    "API_KEY",
                    "********",
                    "********",
                )
                assert waffle.get("API_KEY") == value


def test_a_secret_set_by_the_cli_makes_a_revision_all_the_same(sqlite_url: str) -> None:
    waffle = secret_waffle(sqlite_url)
    assert waffle.app is not None
    runner = waffle.app.test_cli_runner()
    answers = [
        runner.invoke(args=["waffle", "set", f"API_KEY={value}"]).output
        for value in ("s3cret", "s3cret", "another-secret")  # the default, then the stored
    ]
    assert answers == ["revision 1\n", "revision 2\n", "revision 3\n"]
