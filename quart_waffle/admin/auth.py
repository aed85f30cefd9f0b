"""Who may use the admin, and who they are in history.

The rule: the admin is refused until the app configures a way to authorize
(``WAFFLE_ADMIN_TOKEN`` and/or an ``authorize`` callback); then either one
suffices. A bearer token is checked first; a wrong one is refused outright
(401) rather than handed to the callback. The page's login form turns the
token into a signed session cookie. The callback may name the actor by
setting ``g.waffle_actor``; otherwise the actor is ``"authorize"``. Token
users are recorded as ``"token"``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from quart import Request, Response, current_app, g

from ..limits import MAX_ACTOR_LENGTH
from .errors import AdminError

if TYPE_CHECKING:
    from ..extension import QuartWaffle

COOKIE_NAME = "waffle_admin"
SESSION_MAX_AGE = 12 * 3600
TOKEN_ACTOR = "token"
CALLBACK_ACTOR = "authorize"
_SALT = "quart-waffle-admin"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

NOT_CONFIGURED_MESSAGE = (
    "The quart-waffle admin is disabled until the app says who may use it: set"
    " WAFFLE_ADMIN_TOKEN to a long random string (then send 'Authorization: Bearer"
    " <token>'), or pass authorize=<async callback> to QuartWaffle."
)


def not_configured() -> AdminError:
    """403: secure by default, with the way out in the message."""
    return AdminError(403, "admin_not_configured", NOT_CONFIGURED_MESSAGE)


def is_configured(waffle: QuartWaffle) -> bool:
    """Whether the app configured a token or a callback."""
    assert waffle.config is not None
    return bool(waffle.config.admin_token) or waffle.authorize is not None


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _bearer(request: Request) -> str | None:
    """The bearer credentials, or None when the request sends none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


@dataclass(frozen=True)
class PageSession:
    """The admin page's cookie: a CSRF token and, after login, a token fingerprint."""

    csrf: str
    fingerprint: str | None = None

    @classmethod
    def new(cls, fingerprint: str | None = None) -> PageSession:
        """A fresh session with a new random CSRF token."""
        return cls(secrets.token_urlsafe(32), fingerprint)


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
        data: Any = serializer.loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    fp = data.get("fp")
    return PageSession(data["csrf"], fp if isinstance(fp, str) else None)


def save_session(response: Response, session: PageSession, path: str) -> None:
    """Set the signed session cookie: Secure, HttpOnly, SameSite=Strict, admin path only."""
    serializer = _serializer()
    assert serializer is not None
    value = serializer.dumps({"csrf": session.csrf, "fp": session.fingerprint})
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=SESSION_MAX_AGE,
        path=path,
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_session(response: Response, path: str) -> None:
    """Forget the page session."""
    response.delete_cookie(COOKIE_NAME, path=path, secure=True, httponly=True, samesite="Strict")


def csrf_matches(session: PageSession | None, submitted: str | None) -> bool:
    """Constant-time check of a form's CSRF token against the session's."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8"))


def check_same_origin(request: Request) -> None:
    """Refuse unsafe requests a browser marks as coming from another site
    (cookie-borne auth is otherwise open to cross-site request forgery).

    ``Origin: null`` is let through: browsers send it for our own forms
    because the admin sets ``Referrer-Policy: no-referrer``; the CSRF token
    and ``Sec-Fetch-Site`` still apply.
    """
    if request.method not in _UNSAFE_METHODS:
        return
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        raise AdminError(
            403, "cross_site", "Requests from other sites are refused.", {"Origin": "other site"}
        )
    origin = request.headers.get("Origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.host:
        raise AdminError(
            403, "cross_site", "Cross-origin requests are refused.", {"Origin": "not this host"}
        )


def _logged_in(session: PageSession | None, token: str) -> bool:
    if session is None or session.fingerprint is None:
        return False
    return hmac.compare_digest(session.fingerprint, fingerprint(token))


async def authenticate(waffle: QuartWaffle, request: Request, *, page: bool) -> str:
    """Return the actor for ``request`` or raise the right 401/403.

    Order: bearer token; then (page only) the logged-in session cookie; then
    the ``authorize`` callback.
    """
    assert waffle.config is not None
    token = waffle.config.admin_token
    if not is_configured(waffle):
        raise not_configured()
    presented = _bearer(request)
    if token and presented is not None:
        if token_matches(presented, token):
            return TOKEN_ACTOR
        raise AdminError(
            401,
            "invalid_token",
            "The bearer token is wrong.",
            {"Authorization": "wrong token"},
            headers={"WWW-Authenticate": 'Bearer realm="waffle", error="invalid_token"'},
        )
    if page and token and _logged_in(load_session(request), token):
        check_same_origin(request)
        return TOKEN_ACTOR
    if waffle.authorize is not None:
        g.waffle_actor = None
        if await waffle.authorize(request):
            check_same_origin(request)
            actor = g.get("waffle_actor") or CALLBACK_ACTOR
            return str(actor)[:MAX_ACTOR_LENGTH]
        raise AdminError(403, "forbidden", "The app's authorize callback refused this request.")
    raise AdminError(
        401,
        "unauthorized",
        "Credentials are required: send 'Authorization: Bearer <WAFFLE_ADMIN_TOKEN>'.",
        {"Authorization": "missing"},
        headers={"WWW-Authenticate": 'Bearer realm="waffle"'},
    )
