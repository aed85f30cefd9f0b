"""Where the ``redis`` channel finds its server: the URL forms it accepts,
read without importing redis, so the configuration can check them.

- ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads them.
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``:
  the master of ``service`` as the Sentinels (port 26379 by default) name it;
  ``user``/``password`` authenticate with the master and its replicas, the
  query's ``sentinel_username``/``sentinel_password`` with the Sentinels.
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``: a Redis
  Cluster, reached through any of its nodes (port 6379 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
SINGLE_SCHEMES = ("redis", "rediss", "unix")
_SENTINEL_QUERY = ("sentinel_username", "sentinel_password")

Address = tuple[str, int]


@dataclass(frozen=True)
class SentinelAddress:
    """A ``redis+sentinel://`` URL, read."""

    sentinels: tuple[Address, ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None


@dataclass(frozen=True)
class ClusterAddress:
    """A ``redis+cluster://`` URL, read: the nodes to start from."""

    nodes: tuple[Address, ...]
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> str | SentinelAddress | ClusterAddress:
    """``url`` itself for a single server, else the Sentinel or Cluster address
    it names. Raises ValueError saying what is wrong (the URL not repeated)."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in (*SINGLE_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ValueError(
            "the scheme must be redis://, rediss:// or unix:// (one server), redis+sentinel://"
            " (Sentinel) or redis+cluster:// (a cluster), e.g. redis://host:6379/0"
        )
    userinfo_part = url[len(scheme) + 3 :].rpartition("@")[0]
    if scheme != "unix" and any(mark in userinfo_part for mark in "/?#"):
        raise ValueError(
            "a user or password with '/', '?', '#' or '@' must be percent-encoded"
            " (%2F, %3F, %23, %40)"
        )
    if scheme in SINGLE_SCHEMES:
        _port(urlsplit(url))
        return url
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    addresses = tuple(_address(host, default_port) for host in hosts.split(","))
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == CLUSTER_SCHEME:
        if path not in ([], ["0"]) or query or parts.fragment:
            raise ValueError(
                "a cluster URL names its nodes only (a cluster has database 0 alone), e.g."
                " redis+cluster://node1:6379,node2:6379"
            )
        return ClusterAddress(addresses, username, password)
    if not 1 <= len(path) <= 2:
        raise ValueError(
            "name the Sentinels' service, e.g. redis+sentinel://sentinel1:26379,"
            "sentinel2:26379/mymaster/0"
        )
    unknown = sorted(set(query) - set(_SENTINEL_QUERY))
    if unknown or parts.fragment:
        raise ValueError(
            f"unknown option {repr(unknown[0]) if unknown else 'after #'}; a Sentinel URL takes"
            f" {' and '.join(_SENTINEL_QUERY)} only"
        )
    db = 0
    if len(path) == 2:
        if not path[1].isascii() or not path[1].isdigit():
            raise ValueError("the database must be a number")
        db = int(path[1])
    return SentinelAddress(
        sentinels=addresses,
        service=path[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    username, colon, password = userinfo.partition(":")
    return unquote(username) or None, (unquote(password) or None) if colon else None


def _address(host: str, default_port: int) -> Address:
    """``host[:port]`` (or ``[v6]:port``) as a pair; ValueError if it is not one.
    The messages quote no part of the URL: a misplaced password could be it."""
    parts = urlsplit(f"//{host}")
    port = _port(parts)
    if not parts.hostname or parts.username or parts.password or parts.path:
        raise ValueError("a server is not host:port; list the servers as host1:port,host2:port")
    if port == 0:
        raise ValueError("port 0 in a server's address")
    return parts.hostname, default_port if port is None else port


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError as error:
        if str(error).startswith("Port out of range"):
            raise ValueError("Port out of range 0-65535") from None
        raise ValueError("a port must be a number") from None
