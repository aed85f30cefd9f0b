"""What Linux's ``TCP_INFO`` tells of a TCP socket: its state, and a listening socket's
backlog. Elsewhere, or of a socket that is not TCP, it tells nothing."""

from __future__ import annotations

import socket
import struct

CLOSE_WAIT = 8  # tcpi_state: the peer has closed its side
LISTEN = 10  # tcpi_state
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_SACKED = struct.Struct("=I")  # tcpi_sacked, at offset 28: a listening socket's backlog


def state(sock: socket.socket) -> int | None:
    """The TCP state of `sock` (`CLOSE_WAIT`, `LISTEN`, ...), or None."""
    info = _info(sock, 1)
    return info[0] if info else None


def listen_backlog(sock: socket.socket) -> int | None:
    """The backlog `sock` listens with (an IPv4 or IPv6 socket); None if it cannot tell."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    info = _info(sock, 32)
    if info is None or len(info) < 32 or info[0] != LISTEN:
        return None
    backlog: int = _SACKED.unpack_from(info, 28)[0]
    return backlog or None  # 0 (a queue of one): the Python path, which leaves it alone


def _info(sock: socket.socket, size: int) -> bytes | None:
    if _TCP_INFO is None:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, size)
    except OSError:
        return None
