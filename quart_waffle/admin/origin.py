"""Cross-site request forgery: what a browser may be made to send from
another site, refused before an unsafe request changes anything."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from quart import Request

from .cookies import PageSession
from .errors import AdminError

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the content types a cross-site form or a no-cors fetch may send without a preflight
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def csrf_matches(session: PageSession | None, submitted: str | None) -> bool:
    """Constant-time check of a form's CSRF token against the session's."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8"))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    """An origin's scheme, host and port (the default port filled in), or
    None when ``url`` is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme)


def _cross_site(reason: str, header: str, problem: str) -> AdminError:
    return AdminError(
        403, "cross_site", f"Refused as a possible cross-site request: {reason}.", {header: problem}
    )


def check_same_origin(request: Request, *, ambient_credentials: bool = False) -> None:
    """Refuse an unsafe request (POST, PUT, PATCH, DELETE) that may come from
    another site, with 403 ``cross_site`` naming the header and the reason.

    Always refused: ``Sec-Fetch-Site`` of ``cross-site`` or ``same-site``;
    ``Origin: null`` (a sandboxed frame, a ``data:`` or ``file:`` page; the
    admin's ``Referrer-Policy: same-origin`` makes browsers send its own
    origin); an ``Origin`` whose scheme, host or port differs from the
    request's. With ``ambient_credentials`` (the API let in by an
    ``authorize`` callback, which may read cookies) also: a
    request with cookies but without ``Sec-Fetch-Site`` (every current
    browser sends it), and the content types a cross-site form can send
    without asking (form data and ``text/plain``), whatever the body.
    """
    if request.method not in _UNSAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() in ("cross-site", "same-site"):
        raise _cross_site("another site sent it", "Sec-Fetch-Site", site.strip().lower())
    origin = request.headers.get("Origin")
    if origin is not None and origin.strip().lower() == "null":
        raise _cross_site(
            "its origin is hidden (a sandboxed frame or a data: or file: page)",
            "Origin",
            "null",
        )
    if origin is not None and (
        (sent := _origin_of(origin.strip())) is None
        or sent != _origin_of(f"{request.scheme}://{request.host}")
    ):
        raise _cross_site(
            "it comes from another origin (scheme, host and port must all match; behind a"
            " TLS proxy, let the server trust X-Forwarded-Proto)",
            "Origin",
            "not this scheme, host and port",
        )
    if not ambient_credentials:
        return
    if site is None and "Cookie" in request.headers:
        raise _cross_site(
            "it carries cookies but no Sec-Fetch-Site",
            "Sec-Fetch-Site",
            "missing on a request with cookies: send 'Sec-Fetch-Site: same-origin'",
        )
    if request.mimetype in _FORM_TYPES:
        raise _cross_site(
            "a cross-site form can send its content type",
            "Content-Type",
            f"{request.mimetype} is refused: send application/json",
        )
