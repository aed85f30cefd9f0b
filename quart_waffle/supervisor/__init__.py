"""Zero-downtime rolling reloads for any ASGI app served by Hypercorn.

`quart-waffle serve` binds the listening sockets once and runs worker processes on them;
`quart-waffle reload` (or SIGHUP) replaces the workers one batch at a time, each new one ready
before an old one drains. This package imports nothing else from quart_waffle.
"""

from .config import ServeConfig
from .errors import ReloadFailed, WorkerFailed
from .supervisor import Supervisor

__all__ = ["ReloadFailed", "ServeConfig", "Supervisor", "WorkerFailed"]
