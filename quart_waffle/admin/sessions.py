"""Page sessions kept in the settings database, so that logging out on one
worker ends the session on every worker and host.

The cookie carries a random session id; the table holds only its SHA-256
digest and when it expires, so a copy of the table cannot be replayed as
cookies. A session lives :data:`SESSION_LIFETIME` seconds from login, however
busy it is (an absolute lifetime, not a sliding one).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Iterator

from sqlalchemy import BigInteger, Column, String, Table, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store import metadata, unavailable_as_error
from .context import current_waffle
from .errors import AdminError

SESSION_LIFETIME = 12 * 3600
"""Seconds a page session lasts from login."""

sessions_table = Table(
    "waffle_admin_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("expires_at", BigInteger, nullable=False, index=True),
)


@contextlib.contextmanager
def _sessions_table() -> Iterator[None]:
    """Database errors as the admin answers them: a missing sessions table is
    a setup error (503 naming the table and the fix), unreachable is 503."""
    try:
        with unavailable_as_error():
            yield
    except Exception as error:
        cause = error if isinstance(error, DBAPIError) else error.__cause__
        if isinstance(cause, DBAPIError) and sessions_table.name in str(cause.orig):
            raise AdminError(
                503,
                "sessions_table_missing",
                f"The admin's table {sessions_table.name} does not exist, so nobody can log"
                " in: with WAFFLE_CREATE_TABLES off, create it with the other tables (it is"
                " declared on quart_waffle.store.metadata by quart_waffle.admin.sessions).",
            ) from None
        raise


def _now() -> int:
    return int(time.time())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class SessionStore:
    """Open page sessions on the settings database's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(self) -> str:
        """Record a new session; return its id (for the cookie only). Expired
        sessions are removed on the way."""
        session_id = secrets.token_urlsafe(32)
        now = _now()
        with _sessions_table():
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(sessions_table).where(sessions_table.c.expires_at <= now)
                )
                await connection.execute(
                    sessions_table.insert().values(
                        digest=_digest(session_id), expires_at=now + SESSION_LIFETIME
                    )
                )
        return session_id

    async def is_open(self, session_id: str) -> bool:
        """Whether ``session_id`` was opened, not closed, and has not expired."""
        statement = select(sessions_table.c.digest).where(
            sessions_table.c.digest == _digest(session_id),
            sessions_table.c.expires_at > _now(),
        )
        with _sessions_table():
            async with self.engine.connect() as connection:
                return (await connection.execute(statement)).first() is not None

    async def close(self, session_id: str) -> None:
        """End ``session_id`` on every worker."""
        with _sessions_table():
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(sessions_table).where(sessions_table.c.digest == _digest(session_id))
                )


def page_sessions() -> SessionStore:
    """The page sessions, in the settings database of the app serving this request."""
    return SessionStore(current_waffle().engine)
