"""What the tests and the benchmarks share: free ports, the services they need,
servers in their own process groups, a small HTTP client, "every worker
answered", fresh PostgreSQL databases and private Redis servers.

Example::

    async with Deployment(env, log=tmp_path / "hypercorn.log", workers=4) as deployment:
        pids = await deployment.worker_pids()
        status, body = await http_request(deployment.port, "GET", "/whoami")
"""

from harness.deployment import HYPERCORN, Deployment, WhoAmI
from harness.http import Connection, HttpError, close_all, http_get, http_request
from harness.ports import free_port, wait_listening
from harness.postgres import fresh_database
from harness.processes import ROOT, ProcessGroup
from harness.redis import RedisServer
from harness.services import IN_CI, POSTGRES_URL, REDIS_URL, missing_reason, reachable
from harness.workers import connect_per_worker, every_worker, server_pid

__all__ = [
    "HYPERCORN",
    "IN_CI",
    "POSTGRES_URL",
    "REDIS_URL",
    "ROOT",
    "Connection",
    "Deployment",
    "HttpError",
    "ProcessGroup",
    "RedisServer",
    "WhoAmI",
    "close_all",
    "connect_per_worker",
    "every_worker",
    "free_port",
    "fresh_database",
    "http_get",
    "http_request",
    "missing_reason",
    "reachable",
    "server_pid",
    "wait_listening",
]
