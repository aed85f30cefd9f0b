"""A private Redis Cluster of ``redis-server --cluster-enabled yes`` nodes on
free ports, joined by ``redis-cli --cluster create`` (no other package).

Example::

    async with RedisClusterGroup(tmp_path) as cluster:
        env["WAFFLE_REDIS_URL"] = cluster.url
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from harness.lifecycle import StartStopABC
from harness.ports import free_port
from harness.redis import RedisServer

HOST = "127.0.0.1"


class RedisClusterGroup(StartStopABC):
    """``primaries`` cluster nodes (no replicas) sharing the 16384 slots.

    Arguments:
        directory: A private writable directory for the nodes' cluster files.
        primaries: How many nodes; at least 3, as ``redis-cli --cluster create`` asks.
    """

    def __init__(self, directory: Path, *, primaries: int = 3) -> None:
        self.directory = directory
        self.nodes: list[RedisServer] = []
        for _ in range(primaries):
            port = free_port()
            where = directory / f"node-{port}"
            where.mkdir(parents=True, exist_ok=True)
            args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            args += ["--cluster-config-file", str(where / "nodes.conf"), "--dir", str(where)]
            self.nodes.append(RedisServer(port, args))

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    async def start(self, within: float = 30.0) -> None:
        """Start the nodes, join them, and return once every node says the
        cluster is ok."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        try:
            for node in self.nodes:
                await node.start(within)
            create = await asyncio.create_subprocess_exec(
                cli,
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            async with asyncio.timeout(within):
                output, _ = await create.communicate()
            if create.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode()}")
            await self._until_ok(within)
        except BaseException:
            await self.stop()
            raise

    async def _until_ok(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not all([await _cluster_ok(port) for port in self.ports]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster on {self.ports} is not ok after {within} s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Stop every node (by force)."""
        for node in self.nodes:
            await node.stop()


async def _cluster_ok(port: int) -> bool:
    client = Redis(host=HOST, port=port, socket_timeout=2, decode_responses=True)
    try:
        info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        return "cluster_state:ok" in str(info)
    except (OSError, RedisError):
        return False
    finally:
        await client.aclose()
