"""The admin's own CSS and script, served without build details: the ETag is
a digest of the content, and there is no Last-Modified, so a visitor who has
not logged in learns neither the install path nor the deploy time (Werkzeug's
ETag hashes the file's absolute path, mtime and size)."""

from __future__ import annotations

import hashlib
import mimetypes
from functools import cache
from pathlib import Path

from quart import Response, request

from .errors import AdminError

_FOLDER = Path(__file__).parent / "static" / "waffle"
_NAMES = ("admin.css", "admin.js", "fleet.js", "filter.js")


@cache
def _content(name: str) -> tuple[bytes, str]:
    """The file's bytes and their digest, read once per worker (a few KiB)."""
    data = (_FOLDER / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


def static_file(name: str) -> Response:
    """One of the admin's static files, answered 304 when ``If-None-Match``
    holds its ETag; 404 for any other name."""
    if name not in _NAMES:
        raise AdminError(404, "not_found", "No such file.")
    data, digest = _content(name)
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if request.if_none_match.contains(digest):
        response = Response(b"", status=304, mimetype=mimetype)
    else:
        response = Response(data, mimetype=mimetype)
    response.set_etag(digest)
    return response
