"""The listening sockets, bound once by the supervisor and shared by every worker it starts."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hypercorn.config import Config

from .config import ServeConfig
from .errors import ServeError
from .unixsocket import clear_for_bind


@dataclass
class Listeners:
    """Sockets that stay open, with one accept queue each, for the supervisor's whole life."""

    secure: list[socket.socket]
    insecure: list[socket.socket]

    @classmethod
    def bind(cls, config: ServeConfig) -> Listeners:
        """Bind and listen on every address of `config`.

        A ``unix:`` path is bound only when free or left stale by this user: Hypercorn would
        remove the socket of a live server there and take its address.
        """
        for bind in (*config.binds, *config.insecure_binds):
            if bind.startswith("unix:"):
                clear_for_bind(bind.removeprefix("unix:"), f"cannot listen on {bind}")
        # One worker in this Config: Hypercorn then leaves SO_REUSEPORT off, so every process
        # shares a single accept queue per address and a draining worker strands nothing.
        hypercorn_config = Config.from_mapping(
            bind=config.binds,
            insecure_bind=config.insecure_binds,
            certfile=config.certfile,
            keyfile=config.keyfile,
            workers=1,
        )
        try:
            sockets = hypercorn_config.create_sockets()
        except (OSError, OverflowError, ValueError) as error:
            binds = ", ".join([*config.binds, *config.insecure_binds])
            raise ServeError(f"cannot listen on {binds}: {error}") from None
        listeners = cls(sockets.secure_sockets, sockets.insecure_sockets)
        for sock in listeners.all:
            sock.listen(config.backlog)
        return listeners

    @property
    def all(self) -> list[socket.socket]:
        return [*self.secure, *self.insecure]

    def addresses(self) -> list[str]:
        """Printable addresses, e.g. ``127.0.0.1:8000``, as actually bound (port 0 resolved)."""
        return [_describe(sock) for sock in self.all]

    def close(self) -> None:
        for sock in self.all:
            sock.close()


def _describe(sock: socket.socket) -> str:
    address = sock.getsockname()
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{address}"
