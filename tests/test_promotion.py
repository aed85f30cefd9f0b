"""Promotion between environments: export from one store, diff and apply
into another (dry run, expected revision, bad files), from the CLI, the
admin API and Python, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import Result

from quart_waffle import QuartWaffle
from quart_waffle.promotion import apply, export
from tests.helpers import ADMIN_TOKEN, make_waffle, serving_admin
from tests.test_admin_page import logged_in, text_of

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(name="waffle")
async def _served_waffle(database_url: str) -> AsyncIterator[QuartWaffle]:
    """Serving on each database, with the admin on (bearer ADMIN_TOKEN, a SECRET_KEY for the
    page's session); conftest's ``client`` fixture talks to it."""
    waffle = make_waffle(database_url, admin_token=ADMIN_TOKEN)
    async with serving_admin(waffle):
        yield waffle


def cli(waffle: QuartWaffle, *args: str) -> Result:
    assert waffle.app is not None
    result: Result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    return result


def history_size(waffle: QuartWaffle) -> int:
    return cli(waffle, "history", "--limit", "1000").output.count("\n")


def test_cli_export_diff_apply(database_url: str, sqlite_url: str, tmp_path: Path) -> None:
    staging = make_waffle(sqlite_url.replace("waffle.db", "staging.db"))
    production = make_waffle(database_url)
    assert cli(staging, "set", "MAX_ITEMS=50", "THEME=dark", "API_KEY=staging-key").exit_code == 0
    exported = tmp_path / "staging.json"
    assert cli(staging, "export", str(exported)).exit_code == 0
    assert cli(production, "set", "GREETING=Hi").output == "revision 1\n"

    plan = cli(production, "diff", str(exported))
    assert plan.exit_code == 0, plan.output
    assert "~ MAX_ITEMS\t20 -> 50\n" in plan.output
    assert "~ THEME" in plan.output
    assert '~ GREETING\t"Hi" -> "Hello"' in plan.output  # the file holds staging's value
    assert "API_KEY" not in plan.output  # exported without secrets
    assert plan.output.endswith("3 to change, 3 unchanged\n")

    dry = cli(production, "apply", str(exported), "--dry-run")
    assert dry.output.endswith("dry run: nothing stored\n")
    assert history_size(production) == 1
    stale = cli(production, "apply", str(exported), "--expected-revision", "0")
    assert (stale.exit_code, stale.output.count("\n")) == (1, 1)
    assert "GREETING" in stale.output
    assert history_size(production) == 1

    applied = cli(production, "apply", str(exported), "--expected-revision", "1", "--reason", "go")
    assert applied.output.endswith("revision 2\n"), applied.output
    assert cli(production, "get", "MAX_ITEMS").output == "50\n"
    assert cli(production, "history", "--revision", "2").output.count("\treason: go") == 3
    assert cli(production, "get", "API_KEY", "--reveal").output == '"s3cret"\n'
    again = cli(production, "apply", str(exported))
    assert again.output.endswith("0 to change, 6 unchanged\nnothing to change\n")

    for document, named in [
        ({"settings": {"MAX_ITEMS": 50, "NOPE": 1}}, "NOPE: unknown setting"),
        ({"settings": {"MAX_ITEMS": 0, "THEME": "light"}}, "MAX_ITEMS: must be at least 1"),
        ([1, 2], "expected a non-empty JSON object"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(document))
        for command in ("diff", "apply"):
            refused = cli(production, command, str(bad))
            assert (refused.exit_code, refused.output.count("\n")) == (1, 1), refused.output
            assert named in refused.output
    (tmp_path / "broken.json").write_text("{")
    assert "not valid JSON" in cli(production, "apply", str(tmp_path / "broken.json")).output
    assert history_size(production) == 4


async def test_admin_api_and_python(waffle: QuartWaffle, client: TestClientProtocol) -> None:
    document = await (await client.get("/waffle/api/export", headers=AUTH)).get_json()
    assert "API_KEY" not in document["settings"]
    assert document["revision"] == 0
    document["settings"].update(MAX_ITEMS=77, RATE=2.5)
    body = {"settings": document["settings"], "dry_run": True}
    dry = await client.post("/waffle/api/apply", json=body, headers=AUTH)
    plan = await dry.get_json()
    assert plan["applied_revision"] is None
    assert waffle.revision == 0
    assert [change["key"] for change in plan["changes"]] == ["MAX_ITEMS", "RATE"]
    await waffle.update({"RATE": 3.0})
    stale = await client.post(
        "/waffle/api/apply",
        json={**body, "dry_run": False},
        headers={**AUTH, "If-Match": '"0"'},
    )
    assert stale.status_code == 409
    assert list((await stale.get_json())["error"]["fields"]) == ["RATE"]
    stale_plan = await client.post(
        "/waffle/api/apply", json=body, headers={**AUTH, "If-Match": '"0"'}
    )
    assert stale_plan.status_code == 409
    bad = await client.post("/waffle/api/apply", json={"settings": {"THEME": "pink"}}, headers=AUTH)
    assert bad.status_code == 422
    assert "THEME" in (await bad.get_json())["error"]["fields"]
    done = await client.post(
        "/waffle/api/apply",
        json={"settings": document["settings"], "reason": "promote"},
        headers={**AUTH, "If-Match": '"1"'},
    )
    assert (await done.get_json())["applied_revision"] == 2
    assert (waffle.get("MAX_ITEMS"), waffle.get("RATE")) == (77, 2.5)

    planned = await apply(waffle, {"MAX_ITEMS": 78}, dry_run=True)
    assert [change.key for change in planned.changes] == ["MAX_ITEMS"]
    assert export(waffle, include_secrets=True)["settings"]["API_KEY"] == "s3cret"


async def test_admin_page(waffle: QuartWaffle, client: TestClientProtocol) -> None:
    csrf = await logged_in(client)
    exported = await client.get("/waffle/export")
    assert "attachment" in exported.headers["Content-Disposition"]
    document = await exported.get_json()
    assert "API_KEY" not in document["settings"]
    document["settings"]["MAX_ITEMS"] = 60
    text = json.dumps(document)
    form = {"csrf": csrf, "settings": text, "action": "plan"}
    planned = await client.post("/waffle/promote", form=form)
    page = await text_of(planned)
    assert planned.status_code == 200
    assert "<td>MAX_ITEMS</td><td><code>20</code></td><td><code>60</code></td>" in page
    assert waffle.revision == 0
    await waffle.update({"MAX_ITEMS": 30})
    form.update(action="apply", expected="0", reason="from staging")
    stale = await client.post("/waffle/promote", form=form)
    assert stale.status_code == 409
    assert "MAX_ITEMS changed after revision 0" in await text_of(stale)
    form["expected"] = "1"
    applied = await client.post("/waffle/promote", form=form)
    assert applied.status_code == 303
    assert waffle.get("MAX_ITEMS") == 60
    assert (await waffle.history(revision=2))[0].reason == "from staging"
    bad = await client.post("/waffle/promote", form={**form, "settings": '{"THEME": 1}'})
    assert bad.status_code == 422
    assert "THEME" in await text_of(bad)
    assert waffle.revision == 2


async def test_the_page_refuses_the_mask_and_stale_secrets_as_the_api_does(
    waffle: QuartWaffle, client: TestClientProtocol
) -> None:
    csrf = await logged_in(client)
    form = {"csrf": csrf, "action": "apply", "expected": "0"}
    masked = await client.post(
        "/waffle/promote", form={**form, "settings": '{"API_KEY": "********"}'}
    )
    assert masked.status_code == 422
    assert "API_KEY" in await text_of(masked)
    assert (waffle.revision, waffle.get("API_KEY")) == (0, "s3cret")
    await waffle.update({"API_KEY": "rotated"})
    stale = await client.post("/waffle/promote", form={**form, "settings": '{"API_KEY": "s3cret"}'})
    assert stale.status_code == 409
    assert (waffle.revision, waffle.get("API_KEY")) == (1, "rotated")
    # control: the right revision writes the secret
    done = await client.post(
        "/waffle/promote",
        form={**form, "expected": "1", "settings": '{"API_KEY": "promoted"}'},
    )
    assert done.status_code == 303
    assert (waffle.revision, waffle.get("API_KEY")) == (2, "promoted")
