"""Admin rejections: werkzeug HTTP exceptions that render as JSON error bodies.

Every body has the same shape, ``{"error": {"code", "message", "fields"}}``,
where ``fields`` maps each offending key (or header, or ``"body"``) to the
reason, so a client can always tell what to fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import ConflictError, InvalidValueError, StoreUnavailableError, UnknownSettingError
from .context import admin_state, current_waffle

logger = logging.getLogger("quart_waffle.admin")


class AdminError(HTTPException):
    """A rejection with a machine-readable ``error_code`` and per-field reasons."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        fields: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = status
        self.error_code = error_code
        self.message = message
        self.fields = dict(fields or {})
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {
            "error": {
                "code": self.error_code,
                "message": self.message,
                "fields": self.fields,
                **self.extra,
            }
        }


def error_response(error: AdminError) -> Response:
    """``error`` as a JSON response with its status and headers."""
    response = jsonify(error.body())
    response.status_code = error.code or 500
    response.headers.update(error.headers)
    return response


def invalid(error: InvalidValueError) -> AdminError:
    """422 naming every bad key and its reason."""
    fields = {key or "values": reason for key, reason in error.errors.items()}
    return AdminError(
        422, "invalid_value", "Some values were rejected; nothing was stored.", fields
    )


def unavailable(error: StoreUnavailableError) -> AdminError:
    """503: the worker keeps serving its last values, but cannot write or read history."""
    del error  # the driver's message may name hosts and users; it is logged instead
    return AdminError(
        503,
        "store_unavailable",
        "The settings database cannot be reached; nothing was stored. Try again shortly.",
        headers={"Retry-After": "5"},
    )


UNAVAILABLE_LOG_INTERVAL = 60.0
"""Seconds between two notes of an unreachable database by one worker's admin."""


def log_unavailable(error: StoreUnavailableError) -> None:
    """Note an unreachable database, at most once a minute, however many
    requests a client retries. A warning only when the sync channel does not
    watch the database itself: a ``postgres`` channel's sync already warns
    once per outage, so the admin notes it at INFO. By the driver error's type
    only: SQLAlchemy's message carries the statement's parameters, which may
    be secret values."""
    state = admin_state()
    now = time.monotonic()
    if now - state.unavailable_logged_at < UNAVAILABLE_LOG_INTERVAL:
        return
    state.unavailable_logged_at = now
    level = logging.INFO if current_waffle().config.watchtype == "postgres" else logging.WARNING
    cause = error.__cause__ or error
    logger.log(level, "admin: settings database unavailable (%s)", type(cause).__name__)


def conflict(error: ConflictError, current: Mapping[str, Any]) -> AdminError:
    """409 with the current (display) values and revisions of the conflicting keys."""
    return AdminError(
        409,
        "conflict",
        f"Changed since revision {error.expected_revision}; nothing was stored. Fetch the"
        " current values and retry with their revision in If-Match.",
        {key: f"changed at revision {revision}" for key, revision in error.revisions.items()},
        extra={"current": dict(current), "revisions": error.revisions},
    )


def unknown_setting(key: str) -> AdminError:
    """404 for a key in the URL that no setting declares."""
    return AdminError(
        404, "unknown_setting", f"No setting is declared as {key!r}.", {key: "unknown setting"}
    )


def register_error_handlers(blueprint: Blueprint) -> None:
    """Render every failure inside ``blueprint`` as a JSON error body, never a bare 500."""

    @blueprint.errorhandler(AdminError)
    async def _admin_error(error: AdminError) -> Response:
        return error_response(error)

    @blueprint.errorhandler(UnknownSettingError)
    async def _unknown(error: UnknownSettingError) -> Response:
        return error_response(unknown_setting(error.key))

    @blueprint.errorhandler(InvalidValueError)
    async def _invalid(error: InvalidValueError) -> Response:
        return error_response(invalid(error))

    @blueprint.errorhandler(StoreUnavailableError)
    async def _unavailable(error: StoreUnavailableError) -> Response:
        log_unavailable(error)
        return error_response(unavailable(error))

    @blueprint.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        status = error.code or 500
        name = (error.name or "error").lower().replace(" ", "_")
        return error_response(AdminError(status, name, error.description or error.name))
