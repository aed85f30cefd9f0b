"""Who may use the admin, and who they are in history.

The rule: the admin is refused until the app configures a way to authorize
(``WAFFLE_ADMIN_TOKEN`` and/or an ``authorize`` callback); then either one
suffices. A bearer token is checked first; a wrong one is refused outright
(401) rather than handed to the callback. The page's login form turns the
token into a signed session cookie (:mod:`.cookies`) naming a session kept
in the settings database (:mod:`.sessions`); unsafe requests are checked
for cross-site forgery (:mod:`.origin`). The callback may name the actor by setting
``g.waffle_actor``; otherwise the actor is ``"authorize"``. Token users are
recorded as ``"token"``, or ``"token:<name>"`` for the named tokens of
``WAFFLE_ADMIN_TOKENS`` (:mod:`.tokens`). What the request may then read or
change is :mod:`.permissions`' business: :func:`authenticate` leaves the
caller's :class:`~.permissions.Access` in ``g.waffle_access``. A wrong
token, in the header or the login form, is logged and counted against the
client's address (see :mod:`.throttle`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from quart import Request, g

from ..actor import checked_actor
from ..errors import ConfigurationError
from .context import login_throttle
from .cookies import PageSession, fingerprint, load_session
from .errors import AdminError
from .origin import check_same_origin
from .permissions import Access
from .sessions import page_sessions
from .throttle import MAX_FAILURES, MAX_WORKER_FAILURES, WINDOW, LimitReached, client_bucket
from .tokens import NamedToken

if TYPE_CHECKING:
    from ..extension import QuartWaffle

logger = logging.getLogger("quart_waffle.admin")

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_VARIETY = 8
CALLBACK_ACTOR = "authorize"

NOT_CONFIGURED_MESSAGE = (
    "The quart-waffle admin is disabled until the app says who may use it: set"
    " WAFFLE_ADMIN_TOKEN to a long random string (then send 'Authorization: Bearer"
    " <token>'), or pass authorize=<async callback> to QuartWaffle."
)


def check_token(token: str | None, option: str = "WAFFLE_ADMIN_TOKEN") -> None:
    """Refuse, when the app is created, a ``WAFFLE_ADMIN_TOKEN`` that is short
    enough to guess, made of very few different characters (``aaaa...``,
    ``1212...``), or that has spaces around it (a header never carries them)."""
    if not token:
        return
    if token != token.strip():
        problem = "has spaces around it"
    elif len(token) < MIN_TOKEN_LENGTH:
        problem = f"has {len(token)} characters"
    elif len(set(token)) < MIN_TOKEN_VARIETY:
        problem = f"has only {len(set(token))} different characters"
    else:
        return
    raise ConfigurationError(
        f"{option} must be at least {MIN_TOKEN_LENGTH} characters, of at least"
        f" {MIN_TOKEN_VARIETY} different ones, with no spaces around it; the one configured"
        f" {problem}. Generate one with:"
        ' python -c "import secrets; print(secrets.token_urlsafe(32))"'
    )


def not_configured() -> AdminError:
    """403: secure by default, with the way out in the message."""
    return AdminError(403, "admin_not_configured", NOT_CONFIGURED_MESSAGE)


def is_configured(waffle: QuartWaffle) -> bool:
    """Whether the app configured a token or a callback."""
    assert waffle.config is not None
    return bool(credentials(waffle)) or waffle.authorize is not None


def credentials(waffle: QuartWaffle) -> list[NamedToken]:
    """Every admin token configured: the named ones, then ``WAFFLE_ADMIN_TOKEN``."""
    assert waffle.config is not None
    named = list(waffle.config.admin_tokens or ())
    if waffle.config.admin_token:
        named.append(NamedToken("", waffle.config.admin_token))
    return named


def matching(presented: str, tokens: Sequence[NamedToken]) -> NamedToken | None:
    """The token ``presented`` is, compared in constant time with every one
    (no early exit, so the time says nothing of which one, or how close)."""
    found = None
    for named in tokens:
        if token_matches(presented, named.token) and found is None:
            found = named
    return found


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


def client_address(request: Request) -> str:
    """The peer's address, as failed logins are logged (counted by its network)."""
    return request.remote_addr or "unknown"


_LIMIT_LOGS = {
    LimitReached.CLIENT: (
        "admin: refusing logins from %s (network %s) for a minute after %s wrong tokens"
        " within %s seconds; its further attempts are not logged"
    ),
    LimitReached.WORKER: (
        "admin: refusing every token login on this worker for a minute after %s wrong tokens"
        " within %s seconds (the last from %s); further attempts are not logged"
    ),
}
_THROTTLED = {
    LimitReached.CLIENT: "Too many wrong tokens from this address",
    LimitReached.WORKER: "Too many wrong tokens on this server",
}


def token_login(
    request: Request,
    presented: str,
    tokens: str | Sequence[NamedToken],
    *,
    where: str,
    metrics: bool = False,
) -> NamedToken | None:
    """The token ``presented`` is (among ``tokens``, or ``tokens`` itself),
    or None. While the client's network, or this worker as a whole, has
    failed too often (:mod:`.throttle`): 429 with ``Retry-After``, right
    token or not. A wrong token is logged in one line (never the token)
    and counted; the failure that reaches a limit logs one more line, and
    refused attempts none. A right token clears the network's count.
    ``metrics``: counted apart from the admin's logins (see
    :func:`~.context.login_throttle`)."""
    address = client_address(request)
    throttle = login_throttle(metrics=metrics)
    throttled = throttle.retry_after(address)
    if throttled is not None:
        retry_after, limit = throttled
        raise AdminError(
            429,
            "too_many_failed_logins",
            f"{_THROTTLED[limit]}: try again in {retry_after} seconds.",
            {"Authorization": "too many wrong tokens"},
            headers={"Retry-After": str(retry_after)},
        )
    named = matching(presented, [NamedToken("", tokens)] if isinstance(tokens, str) else tokens)
    if named is not None:
        throttle.succeeded(address)
        return named
    logger.warning("admin: failed login from %s (wrong token in %s)", address, where)
    reached = throttle.failed(address)
    if reached is LimitReached.CLIENT:
        logger.warning(
            _LIMIT_LOGS[reached], address, client_bucket(address), MAX_FAILURES, int(WINDOW)
        )
    elif reached is LimitReached.WORKER:
        logger.warning(_LIMIT_LOGS[reached], MAX_WORKER_FAILURES, int(WINDOW), address)
    return None


async def _logged_in(
    session: PageSession | None, tokens: Sequence[NamedToken]
) -> NamedToken | None:
    """The token an open session named by the cookie logged in with (its
    fingerprint says which), or None."""
    if session is None or session.session_id is None or session.fingerprint is None:
        return None
    found = None
    for named in tokens:
        if hmac.compare_digest(session.fingerprint, fingerprint(named.token)) and found is None:
            found = named
    if found is None or not await page_sessions().is_open(session.session_id):
        return None
    return found


def _token_access(named: NamedToken) -> str:
    g.waffle_access = Access(named.actor, named.role, named.keys)
    return named.actor


def wrong_token() -> AdminError:
    """The 401 for a bearer token that matches none configured."""
    return AdminError(
        401,
        "invalid_token",
        "The bearer token is wrong.",
        {"Authorization": "wrong token"},
        headers={"WWW-Authenticate": 'Bearer realm="waffle", error="invalid_token"'},
    )


async def authenticate(waffle: QuartWaffle, request: Request, *, page: bool) -> str:
    """Return the actor for ``request`` or raise the right 401/403.

    Order: bearer token; then (page only) the logged-in session cookie; then
    the ``authorize`` callback. Leaves the caller's :class:`Access` in
    ``g.waffle_access``.
    """
    assert waffle.config is not None
    tokens = credentials(waffle)
    if not is_configured(waffle):
        raise not_configured()
    presented = _bearer(request)
    if tokens and presented is not None:
        named = token_login(request, presented, tokens, where="the Authorization header")
        if named is not None:
            return _token_access(named)
        raise wrong_token()
    if page and tokens and (named := await _logged_in(load_session(request), tokens)):
        check_same_origin(request)
        return _token_access(named)
    if waffle.authorize is not None:
        g.waffle_actor = None
        if await waffle.authorize(request):
            check_same_origin(request, ambient_credentials=not page)
            # a name the writes refuse (control characters) is a 422 naming actor
            actor = checked_actor(str(g.get("waffle_actor") or CALLBACK_ACTOR))
            g.waffle_access = Access(actor)
            return actor
        raise AdminError(403, "forbidden", "The app's authorize callback refused this request.")
    raise AdminError(
        401,
        "unauthorized",
        "Credentials are required: send 'Authorization: Bearer <WAFFLE_ADMIN_TOKEN>'.",
        {"Authorization": "missing"},
        headers={"WWW-Authenticate": 'Bearer realm="waffle"'},
    )
