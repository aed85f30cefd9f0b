"""The OpenAPI 3.1 document of the admin API, built from the declarations.

Written by hand rather than with QuartSchema: QuartSchema is app-wide (it
replaces the app's JSON provider, ``make_response`` and test client and
documents every route of the app), and the admin must not change the app it
is mounted on. Built from the declarations, the document also states each
setting's exact type, choices and range, which generic models could not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..fleet.member import MAX_API_WAIT
from ..limits import MAX_BODY_BYTES, MAX_HISTORY_LIMIT, MAX_REASON_LENGTH
from ..settings import Setting
from .schedule_openapi import schedule_paths

_ERROR_STATUSES = {
    "400": "Malformed JSON body",
    "401": "Missing or wrong bearer token",
    "403": "Refused: admin not configured, authorize callback refused, cross-site,"
    " a read-only token (read_only) or keys refused (forbidden_keys, naming them)",
    "404": "Unknown setting key",
    "409": "Conflict: a key changed after the If-Match revision (current values included)",
    "412": "If-Match is not an ETag of this API",
    "413": f"Body over {MAX_BODY_BYTES} bytes",
    "415": "Content-Type is not application/json",
    "422": "Invalid value, unknown key in the body, or wrong body members",
    "429": "Too many wrong tokens from this address: wait Retry-After seconds",
    "503": "The settings database is unreachable",
}


def _responses(ok: str, *statuses: str, etag: bool = False) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": ok,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    if etag:
        success["headers"] = {"ETag": {"schema": {"type": "string"}}}
    responses = {"200": success}
    for status in ("401", "403", "429", "503", *statuses):
        responses[status] = {
            "description": _ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses


_REASON = {"type": "string", "maxLength": MAX_REASON_LENGTH, "description": "Kept in history."}
_REVISION = {"name": "revision", "in": "path", "required": True, "schema": {"type": "integer"}}


def _optional_body(**properties: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def openapi_document(declarations: Mapping[str, Setting[Any]], prefix: str) -> dict[str, Any]:
    """The OpenAPI document for the admin mounted at ``prefix``."""
    key_param = {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(declarations)},
    }
    if_match = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": 'The ETag you read, e.g. "42": 409 if a written key changed after it.',
    }

    waiting = [
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean"},
            "description": "Answer once every live worker of the fleet serves the new revision"
            " (or after timeout): the body then has an acknowledgement, see docs/fleet.md.",
        },
        {
            "name": "timeout",
            "in": "query",
            "required": False,
            "schema": {"type": "number", "minimum": 0, "maximum": MAX_API_WAIT, "default": 10},
            "description": "Seconds a write with wait=true waits at most.",
        },
    ]

    def json_body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    write_statuses = ("400", "404", "409", "412", "413", "415", "422")
    values = {
        "type": "object",
        "properties": {key: setting.json_schema() for key, setting in declarations.items()},
        "additionalProperties": False,
        "minProperties": 1,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "quart-waffle admin", "version": "1"},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "fields"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "fields": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        }
                    },
                }
            },
        },
        "paths": {
            f"{prefix}/api/settings": {
                "get": {
                    "operationId": "listSettings",
                    "responses": _responses("All settings", etag=True),
                },
                "patch": {
                    "operationId": "patchSettings",
                    "parameters": [if_match, *waiting],
                    "requestBody": json_body(
                        {
                            "type": "object",
                            "required": ["values"],
                            "properties": {"values": values, "reason": _REASON},
                            "additionalProperties": False,
                        }
                    ),
                    "responses": _responses("Stored atomically", *write_statuses, etag=True),
                },
            },
            f"{prefix}/api/settings/{{key}}": {
                "parameters": [key_param],
                "get": {
                    "operationId": "getSetting",
                    "responses": _responses("One setting", "404", etag=True),
                },
                "put": {
                    "operationId": "putSetting",
                    "parameters": [if_match, *waiting],
                    "requestBody": json_body(
                        {
                            "type": "object",
                            "required": ["value"],
                            "properties": {"value": {}, "reason": _REASON},
                            "additionalProperties": False,
                        }
                    ),
                    "responses": _responses("Stored", *write_statuses, etag=True),
                },
                "delete": {
                    "operationId": "resetSetting",
                    "parameters": [if_match, *waiting],
                    "responses": _responses("Reset to the default", "404", "409", "412", etag=True),
                },
            },
            f"{prefix}/api/settings/{{key}}/reset": {
                "parameters": [key_param],
                "post": {
                    "operationId": "resetSettingPost",
                    "parameters": [if_match, *waiting],
                    "responses": _responses("Reset to the default", "404", "409", "412", etag=True),
                },
            },
            f"{prefix}/api/revisions/{{revision}}/revert": {
                "parameters": [_REVISION],
                "post": {
                    "operationId": "revertRevision",
                    "requestBody": _optional_body(force={"type": "boolean"}, reason=_REASON),
                    "responses": _responses("Reverted as a new revision", "409", "422"),
                },
            },
            f"{prefix}/api/revisions/{{revision}}/restore": {
                "parameters": [_REVISION],
                "post": {
                    "operationId": "restoreRevision",
                    "parameters": [if_match],
                    "requestBody": _optional_body(reason=_REASON),
                    "responses": _responses("Restored as a new revision", "409", "412", "422"),
                },
            },
            f"{prefix}/api/export": {
                "get": {
                    "operationId": "exportSettings",
                    "responses": _responses("Every setting but the secrets", etag=True),
                }
            },
            f"{prefix}/api/apply": {
                "post": {
                    "operationId": "applySettings",
                    "parameters": [if_match],
                    "requestBody": _optional_body(
                        settings={"type": "object"}, dry_run={"type": "boolean"}, reason=_REASON
                    ),
                    "responses": _responses(
                        "The plan (changes, unchanged) and applied_revision", "409", "412", "422"
                    ),
                }
            },
            f"{prefix}/api/history": {
                "get": {
                    "operationId": "history",
                    "parameters": [
                        {"name": "key", "in": "query", "schema": {"type": "string"}},
                        {"name": "actor", "in": "query", "schema": {"type": "string"}},
                        *(
                            {
                                "name": name,
                                "in": "query",
                                "schema": {"type": "string", "format": "date-time"},
                            }
                            for name in ("since", "until")
                        ),
                        {"name": "revision", "in": "query", "schema": {"type": "integer"}},
                        {
                            "name": "before",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "An entry id: the previous page's next_before.",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_HISTORY_LIMIT,
                            },
                        },
                    ],
                    "responses": _responses(
                        "Changes, newest first: entries (each with its id) and"
                        " next_before, the last entry's id when more may follow",
                        "404",
                        "422",
                    ),
                },
            },
            **schedule_paths(prefix, values, _responses),
            f"{prefix}/api/fleet": {
                "get": {
                    "operationId": "fleet",
                    "description": "Every worker of every host on this store: host, pid, id,"
                    " start time, code version, revision served, channel state, last sync,"
                    " last error, heartbeat, and state (ok, lagging, gone) with reasons;"
                    " head and counts. Shape: docs/fleet.md.",
                    "responses": _responses("The fleet"),
                },
            },
            f"{prefix}/api/health": {
                "get": {
                    "operationId": "health",
                    "responses": _responses("This worker's sync state"),
                },
            },
        },
    }
