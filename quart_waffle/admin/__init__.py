"""The admin: a JSON API and a web page under ``WAFFLE_ADMIN_PREFIX``.

See ``docs/admin.md``. Both are refused until the app sets
``WAFFLE_ADMIN_TOKEN`` or passes ``authorize=`` to :class:`QuartWaffle`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Quart, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..errors import InvalidValueError
from .auth import NOT_CONFIGURED_MESSAGE, authenticate, check_token
from .context import attach_state, current_waffle, mount_path
from .errors import AdminError, error_response, invalid
from .headers import add_security_headers

if TYPE_CHECKING:
    from ..extension import QuartWaffle


def register_admin(app: Quart, waffle: QuartWaffle) -> None:
    """Mount the admin on ``app`` under ``waffle.config.admin_prefix``."""
    from ..metrics.endpoint import check_metrics_token, metrics
    from . import schedule_api, schedule_page  # noqa: F401  (their routes join the blueprints)
    from .api import api
    from .page import page

    assert waffle.config is not None
    assert waffle.config.admin_prefix
    prefix = mount_path(waffle.config.admin_prefix)
    check_token(waffle.config.admin_token)
    check_metrics_token(waffle.config.metrics_token)
    attach_state(app)
    app.register_blueprint(api, url_prefix=prefix)
    app.register_blueprint(page, url_prefix=prefix)
    app.register_blueprint(metrics, url_prefix=prefix)
    # App-level, limited to the prefix: a request that matches no route (or
    # not its method) never reaches the blueprints' own hooks.
    app.before_request(_routing_errors_under(prefix))
    app.after_request(_security_headers_under(prefix))


def _under(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _routing_errors_under(prefix: str) -> Callable[[], Awaitable[Response | None]]:
    async def answer_routing_error() -> Response | None:
        """404 and 405 under the prefix: JSON for the API once authenticated (before,
        the refusal, without ``Allow``), the page's message otherwise."""
        error = request.routing_exception
        if not isinstance(error, NotFound | MethodNotAllowed) or not _under(prefix, request.path):
            return None
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        status = error.code or 404
        description = error.description or error.name
        if _under(f"{prefix}/api", request.path) or request.path == f"{prefix}/openapi.json":
            refusal = await _refusal()
            if refusal is not None:
                return refusal
            code = error.name.lower().replace(" ", "_")
            return error_response(AdminError(status, code, description, headers=headers))
        from .page import message_page

        response = await message_page(error.name, description, status)
        response.headers.update(headers)
        return response

    return answer_routing_error


async def _refusal() -> Response | None:
    """The API's answer to a request that is not authenticated (401, 403,
    429), checked before a routing error: the methods of a route and
    whether a path exists are for authenticated clients only."""
    try:
        await authenticate(current_waffle(), request, page=False)
    except AdminError as error:
        return error_response(error)
    except InvalidValueError as error:  # the authorize callback's actor name
        return error_response(invalid(error))
    return None


def _security_headers_under(prefix: str) -> Callable[[Response], Awaitable[Response]]:
    async def security_headers(response: Response) -> Response:
        if _under(prefix, request.path):
            await add_security_headers(response)
        return response

    return security_headers


__all__ = ["NOT_CONFIGURED_MESSAGE", "register_admin"]
