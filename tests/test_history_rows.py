"""History is read whatever one row holds: a time that cannot be read is
shown as such, and every other entry with it."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.helpers import ADMIN_TOKEN, make_waffle


async def test_an_unreadable_time_does_not_break_history(sqlite_url: str) -> None:
    waffle = make_waffle(sqlite_url, admin_token=ADMIN_TOKEN)
    assert waffle.app is not None
    async with waffle.app.test_app():
        await waffle.update({"GREETING": "Hi"}, actor="ops")
        await waffle.update({"GREETING": "Hey"}, actor="ops")
        async with waffle.engine.begin() as connection:
            await connection.execute(
                text("UPDATE waffle_history SET changed_at = 'garbage-date' WHERE revision = 1")
            )
        newest, broken = await waffle.history()
        assert (broken.revision, broken.changed_at, broken.new_value) == (1, None, "Hi")
        assert newest.changed_at is not None
        assert newest.changed_at.utcoffset() is not None
        client = waffle.app.test_client()
        response = await client.get(
            "/waffle/api/history", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 200
        entries = (await response.get_json())["entries"]
        assert [entry["changed_at"] is None for entry in entries] == [False, True]
    # the CLI runs its own event loop, as in a shell
    runner = waffle.app.test_cli_runner()
    cli = await asyncio.to_thread(runner.invoke, args=["waffle", "history"])
    assert cli.exit_code == 0, cli.output
    assert "\tunreadable-time\tops\tGREETING\t" in cli.output.splitlines()[1]
