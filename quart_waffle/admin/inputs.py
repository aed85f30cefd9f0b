"""Numbers and bodies read from requests, bounded before they are trusted."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from quart import request
from werkzeug.datastructures import MultiDict

from ..errors import InvalidValueError
from ..kinds import parse_integer
from ..limits import MAX_BODY_BYTES
from ..settings import SECRET_MASK, Setting
from .errors import AdminError

FORM_TYPE = "application/x-www-form-urlencoded"
MASK_REASON = "the mask is not a value; omit the key to keep it"


def refuse_mask(setting: Setting[Any], value: Any) -> None:
    """Refuse the mask written back as a secret's value (InvalidValueError
    naming the key): a client that read the settings, edited one and sent
    them all back would otherwise replace every secret with the mask."""
    if setting.secret and value == SECRET_MASK:
        raise InvalidValueError({setting.key: MASK_REASON})


def natural_number(raw: str | None) -> int | None:
    """``raw`` as an int when it is a whole number from 0 to 10**18 written
    as people do (:func:`~quart_waffle.kinds.parse_integer`), else None."""
    if raw is None:
        return None
    try:
        number = parse_integer(raw)
    except ValueError:
        return None
    return number if 0 <= number < 10**18 else None


async def read_body(what: str = "body") -> bytes:
    """The request body, refused with 413 over ``MAX_BODY_BYTES``: from Content-Length
    before reading, and while reading, since a chunked body has none."""
    too_large = AdminError(
        413,
        "body_too_large",
        f"The {what} is over {MAX_BODY_BYTES} bytes.",
        {"body": f"must be at most {MAX_BODY_BYTES} bytes"},
    )
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    data = bytearray()
    async for chunk in request.body:
        data.extend(chunk)
        if len(data) > MAX_BODY_BYTES:
            raise too_large
    return bytes(data)


async def read_form() -> MultiDict[str, str]:
    """The request's URL-encoded form, bounded like every admin body: 415
    for another type, 400 unless it is well-formed UTF-8 form data."""
    if request.mimetype != FORM_TYPE:
        raise AdminError(
            415,
            "unsupported_media_type",
            f"Send the form as {FORM_TYPE}.",
            {"Content-Type": f"must be {FORM_TYPE}, got {request.mimetype or 'none'!r}"},
        )
    data = await read_body("form")
    try:
        pairs = parse_qsl(
            data.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except ValueError:
        raise AdminError(
            400, "malformed_form", "The form is not well-formed.", {"body": "malformed"}
        ) from None
    return MultiDict(pairs)
