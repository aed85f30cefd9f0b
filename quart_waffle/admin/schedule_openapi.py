"""The schedule's part of the admin's OpenAPI document (docs/schedule.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..limits import MAX_REASON_LENGTH

_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with its offset."}


def schedule_paths(
    prefix: str, values: dict[str, Any], responses: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """The paths of ``<prefix>/api/schedule``; ``values`` is the schema of a
    settings object, ``responses`` the document's own response builder."""
    body = {
        "type": "object",
        "properties": {
            "values": values,
            "at": {**_TIME, "description": "When to apply: ISO 8601 with its offset, not past."},
            "until": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "Put back what was there before at this time (after at).",
            },
            "reason": {"type": "string", "maxLength": MAX_REASON_LENGTH},
            "force": {
                "type": "boolean",
                "description": "Put back at until even over a change made meanwhile.",
            },
        },
        "required": ["values", "at"],
        "additionalProperties": False,
    }
    added = responses("The entry", "400", "413", "415", "422")
    added["201"] = added.pop("200")
    return {
        f"{prefix}/api/schedule": {
            "get": {
                "operationId": "listSchedule",
                "description": "The newest 100 scheduled changes, newest first: id, state"
                " (pending, applied, done, reverted, conflict, failed, cancelled), at, until,"
                " values (secrets masked), force, actor, reason, created_at,"
                " applied_revision, reverted_revision, detail.",
                "responses": responses("{schedule: [entries]}"),
            },
            "post": {
                "operationId": "addSchedule",
                "description": "Schedule a change, applied once by the first worker to see it"
                " due; with until, a temporary one. Values are checked as for a write.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": added,
            },
        },
        f"{prefix}/api/schedule/{{id}}": {
            "delete": {
                "operationId": "cancelSchedule",
                "description": "Cancel a pending change, or the end of an applied temporary"
                " change (its value stays). 404: no such entry; 409: no step left.",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": responses("The cancelled entry", "404", "409"),
            },
        },
    }
