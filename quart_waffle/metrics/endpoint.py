"""``GET <admin prefix>/metrics``: every worker's metrics, for a Prometheus scraper.

Who may read them, first match wins: anyone when ``WAFFLE_METRICS_PUBLIC`` is
on; a bearer token, ``WAFFLE_METRICS_TOKEN`` (read-only: it opens nothing else)
or the admin's own; the app's ``authorize`` callback. With none of these
configured the endpoint refuses everyone (403), as the admin does. A wrong
token is logged and throttled as the admin's are, but counted apart: a
misconfigured scraper never locks the admin out.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from ..admin.auth import authenticate, credentials, is_configured, token_login, wrong_token
from ..admin.context import current_waffle
from ..admin.errors import AdminError, register_error_handlers
from ..admin.tokens import NamedToken
from ..errors import ConfigurationError
from . import INSTALL_HINT, MetricsDisabledError, exposition

metrics = Blueprint("waffle_metrics", __name__)
register_error_handlers(metrics)

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_VARIETY = 8
NOT_CONFIGURED_MESSAGE = (
    "The metrics endpoint refuses everyone until the app says who may read it: set"
    " WAFFLE_METRICS_TOKEN (then send 'Authorization: Bearer <token>'), configure the"
    " admin's WAFFLE_ADMIN_TOKEN or authorize callback, or set WAFFLE_METRICS_PUBLIC=true"
    " on a private network."
)


def check_metrics_token(token: str | None) -> None:
    """Refuse a ``WAFFLE_METRICS_TOKEN`` short enough to guess, of very few
    different characters, or with spaces around it, when the app is created."""
    if not token:
        return
    variety = len(set(token))
    if token != token.strip() or len(token) < MIN_TOKEN_LENGTH or variety < MIN_TOKEN_VARIETY:
        raise ConfigurationError(
            f"WAFFLE_METRICS_TOKEN must be at least {MIN_TOKEN_LENGTH} characters, of at least"
            f" {MIN_TOKEN_VARIETY} different ones, with no spaces around it. Generate one with:"
            ' python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


def _bearer() -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


async def _check_access() -> None:
    """Return when the request may read the metrics; raise 401/403/429 otherwise."""
    waffle = current_waffle()
    config = waffle.config
    if config.metrics_public:
        return
    token = config.metrics_token
    # the metrics token, and the admin's own (named ones included, read-only too)
    tokens = [NamedToken("metrics", token)] if token else []
    tokens += credentials(waffle)
    presented = _bearer()
    if presented is not None and tokens:
        where = "the metrics Authorization header"
        if token_login(request, presented, tokens, where=where, metrics=True):
            return
        raise wrong_token()
    if not token and not is_configured(waffle):
        raise AdminError(403, "metrics_not_configured", NOT_CONFIGURED_MESSAGE)
    if waffle.authorize is not None:
        await authenticate(waffle, request, page=False)
        return
    raise AdminError(
        401,
        "unauthorized",
        "Credentials are required: send 'Authorization: Bearer <WAFFLE_METRICS_TOKEN>'.",
        {"Authorization": "missing"},
        headers={"WWW-Authenticate": 'Bearer realm="waffle"'},
    )


@metrics.get("/metrics")
async def scrape() -> Response:
    """Every worker's metrics in Prometheus' text format; 501 without the extra."""
    await _check_access()
    try:
        body, content_type = exposition()
    except MetricsDisabledError:
        raise AdminError(501, "metrics_disabled", INSTALL_HINT) from None
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
