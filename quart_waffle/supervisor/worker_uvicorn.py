"""The ``uvicorn`` worker class: uvicorn (httptools, uvloop) on inherited sockets.

`uvicorn.Server` serves sockets it is handed (as under gunicorn) and stops when its
``should_exit`` is set, polled ten times a second; it then closes its servers, closes idle
connections, waits for busy ones and runs lifespan shutdown. Here its signal handling is left
out (the worker has its own), readiness is announced once its startup is done, and the drain
(stop accepting, ``Connection: close`` until no connection may send a request) runs before
``should_exit`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from .drain import ASGIApp
from .worker import Control

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, control: Control) -> None:
        super().__init__(config)
        self._control = control
        self._supervised: asyncio.Task[None] | None = None
        self._tracked: list[asyncio.AbstractServer] = []

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._tracked = self._control.track_servers()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM and SIGINT are the worker's own (see `worker.main`)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            await self._control.ready()
            self._supervised = asyncio.create_task(self._drain_when_told())

    async def _drain_when_told(self) -> None:
        await self._control.stopping()
        left = await self._control.drain(self._tracked)
        self.config.timeout_graceful_shutdown = max(round(left), 1)
        self.should_exit = True


def _config(app: ASGIApp, settings: dict[str, Any]) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        loop="none",  # the worker runs uvloop already
        http="httptools",
        lifespan="auto",
        log_config=None,
        log_level=str(settings["loglevel"]).lower(),
        access_log=bool(settings.get("accesslog")),
        proxy_headers=False,
        backlog=int(settings["backlog"]),
        timeout_keep_alive=max(round(float(settings["keep_alive_timeout"])), 1),
        timeout_graceful_shutdown=max(round(float(settings["graceful_timeout"])), 1),
        ssl_certfile=settings.get("certfile"),
        ssl_keyfile=settings.get("keyfile"),
    )
    _log_to(settings.get("errorlog"), logging.getLogger("uvicorn"))
    _log_to(settings.get("accesslog"), logging.getLogger("uvicorn.access"))
    return config


def _log_to(target: str | None, logger: logging.Logger) -> None:
    if not target:
        return
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    )
    logger.addHandler(handler)
    logger.propagate = False


async def serve(app: ASGIApp, control: Control) -> None:
    """Serve `app` until the supervisor drains this worker."""
    settings = control.spec.hypercorn
    if settings.get("insecure_bind") and settings.get("certfile"):
        raise ValueError("the uvicorn worker class serves TLS on every socket: no --insecure-bind")
    fds = [int(bind.removeprefix("fd://")) for bind in settings["bind"]]
    sockets = [socket.socket(fileno=fd) for fd in fds]
    server = _Server(_config(app, settings), control)
    try:
        await server.serve(sockets)
    except SystemExit as exit:  # uvicorn's answer to a failed lifespan startup
        raise RuntimeError(f"startup failed (uvicorn exit code {exit.code})") from None
    if not server.started:
        raise RuntimeError("startup failed")
