"""Presence beside the watcher file: one small JSON file per worker in
``<watcher_file>.fleet/``, replaced atomically (written aside, then renamed),
so a reader never sees half a record. For the workers of one host, as the
``file`` channel itself.

A worker's writes run one at a time on its own thread, in the order they
were made: a write the worker stopped waiting for still runs there, and a
newer one is refused meanwhile (then retried), so it never lands after it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets

from sqlalchemy.ext.asyncio import AsyncEngine

from ..sync.file import FileThread
from ..sync.registry import ChannelOptions
from .presence import PresenceABC, PresenceKind, decode, encode
from .record import PresenceRecord
from .reporter import PUBLISH_TIMEOUT

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_RECORD_BYTES = 64 * 1024


def _file_name(worker_id: str) -> str:
    return _UNSAFE.sub("_", worker_id) + ".json"


class FilePresence(PresenceABC):
    name = "file"
    heartbeat = 5.0

    def __init__(self, options: ChannelOptions) -> None:
        super().__init__()
        self.folder = f"{options.watcher_file}.fleet"
        self._writer = FileThread(min(options.timeout, PUBLISH_TIMEOUT))

    def _publish(self, record: PresenceRecord) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        path = os.path.join(self.folder, _file_name(record.id))
        aside = f"{path}.{secrets.token_hex(4)}.tmp"
        with open(aside, "w", encoding="utf-8") as file:
            file.write(encode(record))
        os.replace(aside, path)

    async def publish(self, record: PresenceRecord) -> None:
        await self._writer.run(self._publish, record)
        self.writes += 1

    async def remove(self, worker_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._writer.run(os.unlink, os.path.join(self.folder, _file_name(worker_id)))

    async def close(self) -> None:
        self._writer.close()

    def _read(self, forget_after: float, now: float) -> list[PresenceRecord]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        records: list[PresenceRecord] = []
        for name in names:
            path = os.path.join(self.folder, name)
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as file:
                    record = decode(file.read(MAX_RECORD_BYTES))
            except OSError:
                continue  # removed meanwhile
            if record is not None and now - record.heartbeat > forget_after:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            elif record is not None:
                records.append(record)
        return records

    async def read(self, *, forget_after: float, now: float) -> list[PresenceRecord]:
        return await asyncio.to_thread(self._read, forget_after, now)


def _build(options: ChannelOptions, _engine: AsyncEngine) -> PresenceABC:
    return FilePresence(options)


KIND = PresenceKind(_build)
