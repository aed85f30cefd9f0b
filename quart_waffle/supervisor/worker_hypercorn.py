"""The ``hypercorn`` and ``hypercorn-uvloop`` worker classes: Hypercorn on inherited sockets."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

from .drain import ASGIApp
from .worker import Control


async def serve(app: ASGIApp, control: Control) -> None:
    """Serve `app` until the supervisor drains this worker."""
    config = Config.from_mapping(control.spec.hypercorn)
    servers = _record_servers(asyncio.get_running_loop())

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


def _record_servers(loop: asyncio.AbstractEventLoop) -> list[asyncio.AbstractServer]:
    """The servers Hypercorn will create on `loop` (asyncio's or uvloop's), as it creates them:
    it keeps them to itself, and a worker must stop accepting before it drains."""
    servers: list[asyncio.AbstractServer] = []
    create_server = loop.create_server

    async def recording_create_server(*args: Any, **kwargs: Any) -> asyncio.AbstractServer:
        server = await create_server(*args, **kwargs)
        servers.append(server)
        return server

    loop.create_server = recording_create_server  # type: ignore[method-assign,assignment]
    return servers
