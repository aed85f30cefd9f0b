"""Who may use the admin, and who they are in history.

The rule: the admin is refused until the app configures a way to authorize
(``WAFFLE_ADMIN_TOKEN`` and/or an ``authorize`` callback); then either one
suffices. A bearer token is checked first; a wrong one is refused outright
(401) rather than handed to the callback. The page's login form turns the
token into a signed session cookie naming a session kept in the settings
database (see :mod:`.sessions`). The callback may name the actor by setting
``g.waffle_actor``; otherwise the actor is ``"authorize"``. Token users are
recorded as ``"token"``. A wrong token, in the header or the login form, is
logged and counted against the client's address (see :mod:`.throttle`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from quart import Request, Response, current_app, g

from ..errors import ConfigurationError
from ..limits import MAX_ACTOR_LENGTH
from .context import login_throttle, page_sessions
from .errors import AdminError
from .sessions import SESSION_LIFETIME

if TYPE_CHECKING:
    from ..extension import QuartWaffle

logger = logging.getLogger("quart_waffle.admin")

COOKIE_NAME = "waffle_admin"
MIN_TOKEN_LENGTH = 16
TOKEN_ACTOR = "token"
CALLBACK_ACTOR = "authorize"
_SALT = "quart-waffle-admin"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the content types a cross-site form or a no-cors fetch may send without a preflight
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})

NOT_CONFIGURED_MESSAGE = (
    "The quart-waffle admin is disabled until the app says who may use it: set"
    " WAFFLE_ADMIN_TOKEN to a long random string (then send 'Authorization: Bearer"
    " <token>'), or pass authorize=<async callback> to QuartWaffle."
)


def check_token(token: str | None) -> None:
    """Refuse, when the app is created, a ``WAFFLE_ADMIN_TOKEN`` that is short
    enough to guess or that has spaces around it (a header never carries them)."""
    if not token:
        return
    if token != token.strip():
        problem = "has spaces around it"
    elif len(token) < MIN_TOKEN_LENGTH:
        problem = f"has {len(token)} characters"
    else:
        return
    raise ConfigurationError(
        f"WAFFLE_ADMIN_TOKEN must be at least {MIN_TOKEN_LENGTH} characters with no spaces"
        f" around it; the one configured {problem}. Generate one with:"
        ' python -c "import secrets; print(secrets.token_urlsafe(32))"'
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


def csrf_matches(session: PageSession | None, submitted: str | None) -> bool:
    """Constant-time check of a form's CSRF token against the session's."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8"))


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
    origin); an ``Origin`` of another host. With ``ambient_credentials`` (the
    API let in by an ``authorize`` callback, which may read cookies) also: a
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
    if origin is not None and urlsplit(origin.strip()).netloc != request.host:
        raise _cross_site("it comes from another origin", "Origin", "not this host")
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


def client_address(request: Request) -> str:
    """Whom failed logins are counted against: the peer's address."""
    return request.remote_addr or "unknown"


def refuse_if_throttled(request: Request) -> None:
    """429 with ``Retry-After`` while the client's address has failed too often."""
    retry_after = login_throttle().retry_after(client_address(request))
    if retry_after is not None:
        raise AdminError(
            429,
            "too_many_failed_logins",
            f"Too many wrong tokens from this address: try again in {retry_after} seconds.",
            {"Authorization": "too many wrong tokens"},
            headers={"Retry-After": str(retry_after)},
        )


def login_failed(request: Request, how: str) -> None:
    """Log one line (never the token) and count the failure against the address."""
    address = client_address(request)
    logger.warning("admin: failed login from %s (%s)", address, how)
    login_throttle().failed(address)


def check_token_login(request: Request, presented: str, token: str) -> bool:
    """Whether ``presented`` is the token, unless the address is throttled (429);
    a failure is logged and counted, a success clears the address's count."""
    refuse_if_throttled(request)
    if token_matches(presented, token):
        login_throttle().succeeded(client_address(request))
        return True
    return False


async def _logged_in(session: PageSession | None, token: str) -> bool:
    """Whether the cookie names an open session that logged in with this token."""
    if session is None or session.session_id is None or session.fingerprint is None:
        return False
    if not hmac.compare_digest(session.fingerprint, fingerprint(token)):
        return False
    return await page_sessions().is_open(session.session_id)


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
        if check_token_login(request, presented, token):
            return TOKEN_ACTOR
        login_failed(request, "wrong bearer token")
        raise AdminError(
            401,
            "invalid_token",
            "The bearer token is wrong.",
            {"Authorization": "wrong token"},
            headers={"WWW-Authenticate": 'Bearer realm="waffle", error="invalid_token"'},
        )
    if page and token and await _logged_in(load_session(request), token):
        check_same_origin(request)
        return TOKEN_ACTOR
    if waffle.authorize is not None:
        g.waffle_actor = None
        if await waffle.authorize(request):
            check_same_origin(request, ambient_credentials=not page)
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
