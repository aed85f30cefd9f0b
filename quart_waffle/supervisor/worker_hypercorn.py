"""The ``hypercorn`` and ``hypercorn-uvloop`` worker classes: Hypercorn on inherited sockets."""

from __future__ import annotations

from typing import cast

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

from .drain import ASGIApp
from .worker import Control


async def serve(app: ASGIApp, control: Control) -> None:
    """Serve `app` until the supervisor drains this worker."""
    config = Config.from_mapping(control.spec.hypercorn)
    servers = control.track_servers()

    async def shutdown_trigger() -> None:
        # Hypercorn calls this once its servers accept, after lifespan startup.
        await control.ready()
        await control.stopping()
        left = await control.drain(servers)
        # What is left of the graceful timeout is Hypercorn's to finish requests in flight.
        config.graceful_timeout = left

    await hypercorn_serve(
        cast(ASGIFramework, app), config, shutdown_trigger=shutdown_trigger, mode="asgi"
    )
