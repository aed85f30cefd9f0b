"""Security headers on every admin response."""

from __future__ import annotations

from quart import Response

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def add_security_headers(response: Response) -> Response:
    """Forbid framing, sniffing, referrers to other sites, caching, and any foreign resource."""
    response.headers.update(SECURITY_HEADERS)
    return response
