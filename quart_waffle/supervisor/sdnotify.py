"""systemd's notification protocol (``sd_notify``), spoken without depending on systemd.

A service of ``Type=notify`` is given ``NOTIFY_SOCKET``: a unix datagram socket, a path or, with a
leading ``@``, a name in the abstract namespace. Each message is ``KEY=value`` lines in one
datagram: ``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``, ``WATCHDOG=1``.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("quart_waffle.supervisor")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, as systemd wants it in ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends notifications to the service manager, or nothing when not run by one.

    Built from the environment by `from_environment`, which removes the variables so that the
    workers (whose messages systemd would refuse, or take as the service's) never see them.

    Example::

        notifier = Notifier.from_environment()
        notifier.send(READY="1", STATUS="serving")
    """

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_interval
        self._socket: socket.socket | None = None
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls) -> Notifier:
        address = os.environ.pop(NOTIFY_SOCKET, None) or None
        usec = os.environ.pop(WATCHDOG_USEC, "")
        pid = os.environ.pop(WATCHDOG_PID, "")
        watchdog = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 1_000_000 / 2  # systemd's advice: twice per period
        if address is not None and not address.startswith(("/", "@")):
            log.warning("Ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract name", address)
            address = None
        return cls(address, watchdog if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> None:
        """Send ``KEY=value`` lines in one datagram; a failure is logged, never raised."""
        if self._socket is None or self.address is None:
            return
        message = "".join(f"{key}={value.replace(chr(10), ' ')}\n" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto(message.encode(), target)
        except OSError as error:
            log.warning("Cannot notify the service manager at %s: %s", self.address, error)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
