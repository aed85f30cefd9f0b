"""The admin page's signed session cookie.

It carries a CSRF token and, after login, a session id (checked against
:mod:`.sessions`) and a keyed fingerprint of the token it logged in with. It
is signed with the app's ``SECRET_KEY`` and set ``Secure``, ``HttpOnly``,
``SameSite=Strict`` on the admin's path only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from quart import Request, Response, current_app

from .sessions import SESSION_LIFETIME

COOKIE_NAME = "waffle_admin"
_SALT = "quart-waffle-admin"


@dataclass(frozen=True)
class PageSession:
    """The admin page's cookie: a CSRF token and, after login, the session's
    id and a fingerprint of the token it logged in with. ``unsaved`` until
    the cookie is set."""

    csrf: str
    session_id: str | None = None
    fingerprint: str | None = None
    unsaved: bool = field(default=False, compare=False)

    @classmethod
    def new(cls, session_id: str | None = None, fingerprint: str | None = None) -> PageSession:
        """A fresh session with a new random CSRF token."""
        return cls(secrets.token_urlsafe(32), session_id, fingerprint, unsaved=True)


def secret_key() -> str | bytes | None:
    """The app's secret key, which signs the page's cookie; None when unset."""
    key: str | bytes | None = current_app.secret_key
    return key or None


def _serializer() -> URLSafeTimedSerializer | None:
    key = secret_key()
    return None if key is None else URLSafeTimedSerializer(key, salt=_SALT)


def fingerprint(token: str) -> str:
    """A keyed digest of the admin token: rotating the token ends every page session."""
    key = secret_key() or b""
    key_bytes = key if isinstance(key, bytes) else key.encode("utf-8")
    return hmac.new(key_bytes, token.encode("utf-8"), hashlib.sha256).hexdigest()


def load_session(request: Request) -> PageSession | None:
    """The page session from the signed cookie, or None (missing, forged or expired)."""
    serializer = _serializer()
    raw = request.cookies.get(COOKIE_NAME)
    if serializer is None or raw is None or len(raw) > 4096:
        return None
    try:
        data: Any = serializer.loads(raw, max_age=SESSION_LIFETIME)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    session_id, fp = data.get("sid"), data.get("fp")
    if not (isinstance(session_id, str) and isinstance(fp, str)):
        session_id = fp = None
    return PageSession(data["csrf"], session_id, fp)


PLAIN_HTTP_MESSAGE = (
    "The admin page needs HTTPS here: it was reached over plain HTTP on a name other"
    " than localhost, where browsers drop its Secure session cookie, so logging in could"
    " not last (and the token would cross the network in clear). Serve the app over"
    " HTTPS (behind a TLS proxy, let the server trust X-Forwarded-Proto, e.g. Hypercorn's"
    " ProxyFixMiddleware), or open the page as localhost, e.g. through an SSH tunnel"
    " (ssh -L 8000:127.0.0.1:8000 <host>, then http://localhost:8000). The JSON API works"
    " over HTTP with 'Authorization: Bearer <WAFFLE_ADMIN_TOKEN>'."
)


def cookie_can_be_kept(request: Request) -> bool:
    """Whether a browser keeps the page's ``Secure`` cookie from ``request``:
    over HTTPS, or over HTTP on a loopback name (localhost, ``*.localhost``,
    127.0.0.0/8, ::1), which browsers treat as secure."""
    if request.scheme == "https":
        return True
    host = (urlsplit(f"//{request.host}").hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def save_session(response: Response, session: PageSession, path: str) -> None:
    """Set the signed session cookie: Secure, HttpOnly, SameSite=Strict, admin path only."""
    serializer = _serializer()
    assert serializer is not None
    value = serializer.dumps(
        {"csrf": session.csrf, "sid": session.session_id, "fp": session.fingerprint}
    )
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=SESSION_LIFETIME,
        path=path,
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_session(response: Response, path: str) -> None:
    """Forget the page session."""
    response.delete_cookie(COOKIE_NAME, path=path, secure=True, httponly=True, samesite="Strict")
