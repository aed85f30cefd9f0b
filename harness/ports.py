"""Free loopback ports, and waiting until a server listens on one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_listening(
    port: int, within: float, failed: Callable[[], str | None] = lambda: None
) -> None:
    """Until something accepts on 127.0.0.1:``port``.

    Arguments:
        port: The port to try.
        within: Seconds allowed; then TimeoutError.
        failed: Called between attempts; a message (e.g. "the server exited") stops the wait
            with RuntimeError at once.
    """
    deadline = time.monotonic() + within
    while True:
        if (reason := failed()) is not None:
            raise RuntimeError(reason)
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port} after {within} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
