"""Presence in the settings database: the table ``waffle_presence``, one row
per worker. Each write is a transaction, so a worker writes when what it
serves changes and otherwise once per heartbeat (a minute by default)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store import presence_table
from ..sync.registry import ChannelOptions
from .presence import PresenceABC, PresenceKind, decode, encode
from .record import PresenceRecord


class TablePresence(PresenceABC):
    name = "table"
    heartbeat = 60.0

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine

    async def publish(self, record: PresenceRecord) -> None:
        async with self.engine.begin() as connection:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            values = {"id": record.id, "heartbeat": record.heartbeat, "record": encode(record)}
            statement = insert(presence_table).values(**values)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"heartbeat": values["heartbeat"], "record": values["record"]},
                )
            )
        self.writes += 1

    async def remove(self, worker_id: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(delete(presence_table).where(presence_table.c.id == worker_id))

    async def read(self, *, forget_after: float, now: float) -> list[PresenceRecord]:
        table = presence_table.c
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(table.heartbeat, table.record))).all()
        records: list[PresenceRecord] = []
        stale = False
        for row in rows:
            if now - row.heartbeat > forget_after:
                stale = True
            elif (record := decode(row.record)) is not None:
                records.append(record)
        if stale:
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(presence_table).where(table.heartbeat < now - forget_after)
                )
        return records


def _build(_options: ChannelOptions, engine: AsyncEngine) -> PresenceABC:
    return TablePresence(engine)


KIND = PresenceKind(_build)
