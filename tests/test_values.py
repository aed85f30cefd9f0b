"""Hostile values and unreadable rows on real SQLite and real PostgreSQL: what
may be written, what a worker does with a row it cannot read, what history
shows and keeps."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from quart_waffle import ConflictError, InvalidValueError, QuartWaffle
from quart_waffle.kinds import MAX_DEPTH, MAX_VALUE_BYTES
from quart_waffle.settings import SECRET_MASK, UNREADABLE_MARK
from quart_waffle.store import (
    SettingsStore,
    create_engine,
    head_table,
    history_table,
    settings_table,
)
from tests.helpers import ADMIN_TOKEN, CONFS, make_waffle

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: list[tuple[str, Any, str]] = [
    ("BANNER", {"text": _nested(MAX_DEPTH)}, f"must nest at most {MAX_DEPTH}"),
    ("BANNER", {"text": _nested(50_000)}, f"must nest at most {MAX_DEPTH}"),
    ("BANNER", {"text": "x" * MAX_VALUE_BYTES}, f"must be at most {MAX_VALUE_BYTES} bytes"),
    ("GREETING", "x" * (MAX_VALUE_BYTES + 1), f"must be at most {MAX_VALUE_BYTES} bytes"),
    ("GREETING", "caf\udce9", "lone surrogates"),
    ("BANNER", {"text": "\ud800"}, "lone surrogates"),
    ("BANNER", {"\udfff": "key"}, "lone surrogates"),
    ("RATE", 10**400, "too large"),
    ("RATE", float("inf"), "finite number"),
    ("RATE", float("nan"), "finite number"),
    ("BANNER", {"text": 10**5000}, "must be between"),
    ("BANNER", {"text": 2**64}, "must be between"),
    ("BANNER", {"text": float("nan")}, "NaN or infinity"),
    ("API_KEY", "\ud83d", "lone surrogates"),
]


async def test_hostile_values_are_refused_and_nothing_is_stored(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"GREETING": "before"})
        revision, history = waffle.revision, await waffle.history()
        for key, value, reason in HOSTILE:
            with pytest.raises(InvalidValueError) as caught:
                await waffle.update({key: value, "THEME": "dark"}, actor="attacker")
            assert list(caught.value.errors) == [key]
            assert reason in caught.value.errors[key]
        assert await waffle.refresh() == revision
        assert await waffle.history() == history
        assert waffle.get("THEME") == "light"
    other = make_waffle(database_url)
    async with other.connected():
        assert other.get("GREETING") == "before"


async def test_the_largest_and_deepest_allowed_values_round_trip(database_url: str) -> None:
    deep: Any = {"text": _nested(MAX_DEPTH - 1)}
    big = "é" * ((MAX_VALUE_BYTES - 2) // 2)
    writer = make_waffle(database_url)
    async with writer.connected():
        await writer.update({"BANNER": deep, "GREETING": big})
    reader = make_waffle(database_url)
    async with reader.connected():
        assert reader.get("BANNER") == deep
        assert reader.get("GREETING") == big


async def _execute(database_url: str, *statements: Any) -> None:
    """Run ``statements`` in one transaction, as an operator's SQL would."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(statement)
    finally:
        await engine.dispose()


async def _history_rows(database_url: str) -> list[Any]:
    """The history table as stored."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(history_table))).all())
    finally:
        await engine.dispose()


def _corrupt_rows(revision: int) -> list[Any]:
    """Rows no worker can use, all committed as ``revision``."""
    rows = {
        "BANNER": '{"text": "unterminated',
        "GREETING": "[" * 30_000 + "]" * 30_000,  # beyond Python's recursion limit
        "MAX_ITEMS": '"a string now"',  # wrong type after a declaration change
        "THEME": '"\\ud800"',  # a lone surrogate
        "RATE": "1e400",
    }
    now = datetime.now(UTC)
    return [
        update(head_table).values(revision=revision),
        delete(settings_table).where(settings_table.c.key.in_(list(rows))),
        *(
            insert(settings_table).values(key=key, value=text, revision=revision, updated_at=now)
            for key, text in rows.items()
        ),
        *(
            insert(history_table).values(
                revision=revision,
                key=key,
                old_value=text,
                new_value=text,
                changed_at=now,
                actor="sql",
            )
            for key, text in rows.items()
        ),
    ]


async def test_unreadable_rows_never_stop_a_worker(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_waffle(database_url)
    async with writer.connected():
        await writer.update({"MAINTENANCE": True})
    await _execute(database_url, *_corrupt_rows(2))
    corrupt = {"BANNER", "GREETING", "MAX_ITEMS", "THEME", "RATE"}
    with caplog.at_level(logging.WARNING, logger="quart_waffle"):
        worker = make_waffle(database_url)
        async with worker.connected():
            assert worker.revision == 2
            assert worker.get("MAINTENANCE") is True
            for key in corrupt:
                assert worker.get(key) == worker.setting(key).default
            warned = [record.getMessage() for record in caplog.records]
            for key in corrupt:
                assert len([line for line in warned if line.startswith(f"{key}:")]) == 1
            history = await worker.history()
            unreadable = corrupt - {"MAX_ITEMS"}  # readable JSON, only no longer an int
            assert {
                entry.key for entry in history if entry.new_value == UNREADABLE_MARK
            } == unreadable
            assert {
                entry.key for entry in history if entry.old_value == UNREADABLE_MARK
            } == unreadable
            [changed_type] = [entry for entry in history if entry.key == "MAX_ITEMS"]
            assert changed_type.new_value == "a string now"
            # a worker already serving catches up past them, then on
            await writer.start(watch=False)
            try:
                await writer.update({"GREETING": "fixed"})
                await _execute(database_url, *_corrupt_rows(4))
                await writer.update({"MAINTENANCE": False})
            finally:
                await writer.stop()
            assert await worker.refresh() == 5
            assert worker.get("GREETING") == "Hello"  # the unreadable row came after "fixed"
            assert worker.get("MAINTENANCE") is False


async def test_history_never_holds_a_secret(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"API_KEY": "first-secret", "GREETING": "Hi"})
        await waffle.update({"API_KEY": "second-secret"})
        entries = {(entry.key, entry.revision): entry for entry in await waffle.history()}
        assert entries["API_KEY", 2].old_value == SECRET_MASK
        assert entries["API_KEY", 2].new_value == SECRET_MASK
        assert entries["GREETING", 1].new_value == "Hi"
        assert waffle.get("API_KEY") == "second-secret"
    dump = repr(await _history_rows(database_url))
    assert "first-secret" not in dump
    assert "second-secret" not in dump
    assert "s3cret" not in dump  # the default, the old value of the first change


async def test_history_masks_secrets_kept_by_older_versions_and_keys_no_longer_declared(
    database_url: str,
) -> None:
    writer = make_waffle(database_url)
    async with writer.connected():
        await writer.update({"GREETING": "Hi"})
    now = datetime.now(UTC)
    await _execute(
        database_url,
        update(head_table).values(revision=2),
        insert(history_table).values(
            revision=2,
            key="API_KEY",
            old_value='"old"',
            new_value='"clear"',
            changed_at=now,
            actor="",
        ),
    )
    confs = {key: conf for key, conf in CONFS.items() if key != "GREETING"}
    reader = make_waffle(database_url, confs=confs)
    async with reader.connected():
        entries = {entry.key: entry for entry in await reader.history()}
    assert (entries["API_KEY"].old_value, entries["API_KEY"].new_value) == (SECRET_MASK,) * 2
    assert entries["GREETING"].new_value == SECRET_MASK
    # and the worker's start-up blanked the secret the earlier version kept
    recorded = repr(await _history_rows(database_url))
    assert '"clear"' not in recorded
    assert '"old"' not in recorded
    assert '"Hi"' in recorded  # not a secret: kept
    store = SettingsStore(create_engine(database_url))  # no declarations: all masked
    try:
        assert {entry.new_value for entry in await store.history()} == {SECRET_MASK}
    finally:
        await store.engine.dispose()


async def test_history_times_are_utc_aware(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        before = datetime.now(UTC)
        await waffle.update({"GREETING": "Hi"})
        [entry] = await waffle.history()
    assert entry.changed_at is not None
    assert entry.changed_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= entry.changed_at <= datetime.now(UTC)


HOSTILE_BODIES: list[tuple[str, str, str]] = [
    ("GREETING", '{"value": "caf\\udce9"}', "lone surrogates"),
    ("BANNER", '{"value": {"\\ud800": 1}}', "lone surrogates"),
    ("RATE", '{"value": 1' + "0" * 400 + "}", "too large"),
    ("RATE", '{"value": 1e400}', "finite number"),
    ("BANNER", '{"value": {"text": 1e400}}', "NaN or infinity"),
    ("BANNER", '{"value": {"text": ' + "[" * 40 + "]" * 40 + "}}", "must nest at most"),
    ("BANNER", '{"value": {"text": 1' + "0" * 30 + "}}", "must be between"),
]


async def test_the_admin_api_refuses_hostile_values_with_422(
    waffle: QuartWaffle, client: Any
) -> None:
    for key, body, reason in HOSTILE_BODIES:
        response = await client.put(
            f"/waffle/api/settings/{key}",
            data=body.encode("utf-8"),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, body[:60]
        fields = (await response.get_json())["error"]["fields"]
        assert list(fields) == [key]
        assert reason in fields[key]
    assert await waffle.history() == []


async def test_the_admin_history_shows_unreadable_rows(
    waffle: QuartWaffle, client: Any, sqlite_url: str
) -> None:
    await _execute(sqlite_url, *_corrupt_rows(1))
    response = await client.get("/waffle/api/history", headers=AUTH)
    assert response.status_code == 200
    entries = (await response.get_json())["entries"]
    assert {entry["key"] for entry in entries if entry["new_value"] == UNREADABLE_MARK} == {
        "BANNER",
        "GREETING",
        "THEME",
        "RATE",
    }
    assert all(entry["changed_at"].endswith("+00:00") for entry in entries)
    login = await (await client.get("/waffle/")).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    response = await client.post("/waffle/login", form={"csrf": csrf[1], "token": ADMIN_TOKEN})
    assert response.status_code == 303
    for key in ("BANNER", "GREETING"):
        page = await client.get(f"/waffle/history/{key}")
        assert page.status_code == 200
        assert "unreadable" in await page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("assignment", "reason"),
    [
        ("RATE=1e400", "RATE: must be a finite number"),
        ("MAX_ITEMS=1_0", "MAX_ITEMS: must be an integer"),
        ("MAX_ITEMS=\u0663", "MAX_ITEMS: must be an integer"),
        ("BANNER=[1]", "BANNER: must be a JSON object"),
        ("BANNER=" + "[" * 40 + "]" * 40, "BANNER: must nest at most"),
        ('BANNER={"text": ' + "[" * 40 + "]" * 40 + "}", "BANNER: must nest at most"),
    ],
)
def test_the_cli_refuses_hostile_text_in_one_line(
    sqlite_url: str, assignment: str, reason: str
) -> None:
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    result = waffle.app.test_cli_runner().invoke(args=["waffle", "set", assignment])
    assert result.exit_code == 1
    assert reason in result.output
    assert len(result.output.strip().splitlines()) == 1


async def test_a_conflict_on_an_unreadable_row_is_still_a_conflict(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        await waffle.update({"MAINTENANCE": True})
        await _execute(database_url, *_corrupt_rows(2))
        with pytest.raises(ConflictError) as caught:
            await waffle.update({"BANNER": {"text": "new"}}, expected_revision=1)
        assert caught.value.current == {"BANNER": UNREADABLE_MARK}
        assert caught.value.revisions == {"BANNER": 2}


@pytest.mark.parametrize(
    "args",
    [
        ["history", "--limit", "1_0"],
        ["history", "--limit", "\uff15"],  # fullwidth 5
        ["history", "--before", "\u0663"],  # Arabic-Indic 3
        ["history", "--limit", "0"],
        ["set", "GREETING=x", "--expect-revision", "-1"],
        ["set", "GREETING=x", "--expect-revision", "²"],
    ],
)
def test_the_cli_reads_its_own_numbers_strictly(sqlite_url: str, args: list[str]) -> None:
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    result = waffle.app.test_cli_runner().invoke(args=["waffle", *args])
    assert result.exit_code == 1  # a usage error, before anything runs: one line
    assert "must be" in result.output


def test_the_cli_takes_numbers_with_spaces(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    result = waffle.app.test_cli_runner().invoke(args=["waffle", "history", "--limit", " 5 "])
    assert result.exit_code == 0, result.output


async def test_any_actor_and_any_valid_text_can_be_stored(database_url: str) -> None:
    waffle = make_waffle(database_url)
    async with waffle.connected():
        # an actor with NUL or a lone surrogate is refused (tests/test_actor.py)
        await waffle.update({"GREETING": "nul \x00 bell \x07 é 😀"}, actor="ops é 😀")
        [entry] = await waffle.history()
        assert entry.actor == "ops é 😀"
        assert entry.new_value == "nul \x00 bell \x07 é 😀"
    reader = make_waffle(database_url)
    async with reader.connected():
        assert reader.get("GREETING") == "nul \x00 bell \x07 é 😀"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('{"settings": {"BANNER": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested too deeply"),
        ('{"BANNER": {"text": ' + "[" * 40 + "]" * 40 + "}}", "BANNER: must nest at most"),
        ('{"RATE": NaN}', "RATE: must be a finite number"),
        ('{"GREETING": "\\ud800"}', "GREETING: must not contain lone surrogates"),
    ],
)
def test_the_cli_import_refuses_hostile_documents_in_one_line(
    sqlite_url: str, tmp_path: Path, document: str, reason: str
) -> None:
    source = tmp_path / "settings.json"
    source.write_text(document)
    waffle = make_waffle(sqlite_url)
    assert waffle.app is not None
    result = waffle.app.test_cli_runner().invoke(args=["waffle", "import", str(source)])
    assert result.exit_code == 1
    assert reason in result.output
    assert len(result.output.strip().splitlines()) == 1
