"""systemd socket activation: listening sockets passed as descriptors 3, 4, ... instead of bound.

systemd sets ``LISTEN_PID`` (this process), ``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES``
(their ``FileDescriptorName=``, colon separated). The variables are removed once read so that the
workers never take the sockets as passed to them.
"""

from __future__ import annotations

import os
import socket

from .errors import ServeError

FIRST_FD = 3  # SD_LISTEN_FDS_START
INSECURE_NAME = "insecure"  # FileDescriptorName= of a plain HTTP socket beside TLS ones


def passed_sockets() -> list[tuple[str, socket.socket]]:
    """The listening sockets passed to this process, each with its name; none when not
    activated (or when the variables name another process: they were inherited).

    Raises `ServeError` when a passed descriptor is not a listening stream socket.
    """
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    names = os.environ.pop("LISTEN_FDNAMES", "").split(":")
    if pid != str(os.getpid()) or not count.isascii() or not count.isdigit():
        return []
    sockets: list[tuple[str, socket.socket]] = []
    for index in range(int(count)):
        fd = FIRST_FD + index
        name = names[index] if index < len(names) else ""
        try:
            sock = socket.socket(fileno=fd)
        except OSError as error:
            raise ServeError(f"passed descriptor {fd}: not a socket ({error.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.detach()
            raise ServeError(f"passed descriptor {fd}: not a listening stream socket")
        sock.set_inheritable(False)  # passed to each worker explicitly, never leaked
        sockets.append((name, sock))
    return sockets
