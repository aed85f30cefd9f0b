"""A private Redis master, its replicas and the Sentinels that watch them, on
free ports, to fail over at will (``redis-server --sentinel``: no other package).

Example::

    async with SentinelGroup(tmp_path) as group:
        env["WAFFLE_REDIS_URL"] = group.url
        old = await group.master_port()
        new = await group.failover()  # or: await group.kill_master(); await group.new_master(old)
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from harness.lifecycle import StartStopABC
from harness.ports import free_port, wait_listening
from harness.processes import ProcessGroup
from harness.redis import RedisServer

HOST = "127.0.0.1"


class SentinelGroup(StartStopABC):
    """One master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a
    majority), all on 127.0.0.1, with low timeouts so a failover takes seconds.

    Arguments:
        directory: A private writable directory (each Sentinel rewrites its config file).
        service: The name the Sentinels know the master by.
        down_after: Milliseconds without an answer before a server counts as down.
        failover_timeout: Sentinel's ``failover-timeout``, milliseconds.
    """

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 1,
        sentinels: int = 1,
        service: str = "waffle",
        down_after: int = 1000,
        failover_timeout: int = 5000,
    ) -> None:
        self.directory = directory
        self.service = service
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        master_port = free_port()
        self.servers = [self._server(master_port, None)]
        self.servers += [self._server(free_port(), master_port) for _ in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinels: list[ProcessGroup] = []
        self._first_master = master_port

    def _server(self, port: int, master: int | None) -> RedisServer:
        where = self.directory / f"redis-{port}"
        where.mkdir(parents=True, exist_ok=True)
        args = ["--dir", str(where), "--repl-diskless-sync-delay", "0"]
        if master is not None:
            args += ["--replicaof", HOST, str(master)]
        return RedisServer(port, args)

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL naming every Sentinel and the service, database 0."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def server(self, port: int) -> RedisServer:
        """The data server (master or replica) on ``port``."""
        return next(server for server in self.servers if server.port == port)

    async def start(self, within: float = 20.0) -> None:
        """Start every server and Sentinel; return once the Sentinels see the
        master and every replica in sync, so a failover can succeed."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        try:
            for server in self.servers:
                await server.start(within)
            quorum = len(self.sentinel_ports) // 2 + 1
            for port in self.sentinel_ports:
                config = self.directory / f"sentinel-{port}.conf"
                config.write_text(
                    f"port {port}\nbind {HOST}\ndir {self.directory}\n"
                    f"sentinel monitor {self.service} {HOST} {self._first_master} {quorum}\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after}\n"
                    f"sentinel failover-timeout {self.service} {self.failover_timeout}\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
                sentinel = ProcessGroup(
                    [binary, str(config), "--sentinel"],
                    env={},
                    log=self.directory / f"sentinel-{port}.log",
                    cwd=self.directory,
                )
                self._sentinels.append(sentinel)
                sentinel.start()
                await wait_listening(port, within, sentinel.exited)
            await self._until_ready(within)
        except BaseException:
            await self.stop()
            raise

    async def _until_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        replicas = len(self.servers) - 1
        while True:
            ready = True
            for port in self.sentinel_ports:
                seen = await self._sentinel(port, "SENTINEL", "REPLICAS", self.service)
                healthy = [r for r in seen or [] if _is_healthy_replica(r)]
                others = await self._sentinel(port, "SENTINEL", "SENTINELS", self.service)
                ready &= len(healthy) == replicas
                ready &= len(others or []) == len(self.sentinel_ports) - 1
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the Sentinels did not see every replica in sync:\n{self.log()}"
                )
            await asyncio.sleep(0.1)

    async def _sentinel(self, port: int, *command: str) -> Any:
        client = Redis(host=HOST, port=port, socket_timeout=2, decode_responses=True)
        try:
            return await client.execute_command(*command)  # type: ignore[no-untyped-call]
        except (OSError, RedisError):
            return None
        finally:
            await client.aclose()

    async def master_port(self) -> int:
        """The master's port, as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            address = await self._sentinel(
                port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
            )
            if address:
                return int(address[1])
        raise RuntimeError(f"no Sentinel names a master:\n{self.log()}")

    async def new_master(self, old: int, within: float = 20.0) -> int:
        """Wait until every Sentinel names a master other than ``old`` and that
        server says it is a master; its port."""
        deadline = time.monotonic() + within
        while True:
            ports = set()
            for port in self.sentinel_ports:
                address = await self._sentinel(
                    port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                ports.add(int(address[1]) if address else old)
            if len(ports) == 1 and old not in ports:
                (new,) = ports
                if await _role(new) == "master":
                    return new
            if time.monotonic() > deadline:
                raise TimeoutError(f"no failover away from {old} within {within} s:\n{self.log()}")
            await asyncio.sleep(0.05)

    async def failover(self, within: float = 20.0) -> int:
        """``SENTINEL FAILOVER``: the master hands over to a replica (and becomes
        one); the new master's port once every Sentinel names it."""
        old = await self.master_port()
        answer = await self._sentinel(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.service)
        if answer is None:
            raise RuntimeError("SENTINEL FAILOVER was not answered")
        return await self.new_master(old, within)

    async def kill_master(self) -> int:
        """SIGKILL the master (a crash, not a handover); the port it had."""
        old = await self.master_port()
        await self.server(old).stop()
        return old

    def log(self, lines: int = 15) -> str:
        """The end of every Sentinel's log, for failure messages."""
        return "\n".join(f"--- sentinel\n{sentinel.output(lines)}" for sentinel in self._sentinels)

    async def stop(self) -> None:
        """Stop every Sentinel and server (by force)."""
        for sentinel in self._sentinels:
            await asyncio.to_thread(sentinel.stop, None)
        self._sentinels = []
        for server in self.servers:
            await server.stop()


def _is_healthy_replica(replica: Any) -> bool:
    fields = (
        dict(zip(replica[::2], replica[1::2], strict=True))
        if isinstance(replica, list)
        else replica
    )
    flags = str(fields.get("flags", ""))
    return (
        "s_down" not in flags
        and "disconnected" not in flags
        and fields.get("master-link-status") == "ok"
    )


async def _role(port: int) -> str | None:
    client = Redis(host=HOST, port=port, socket_timeout=2, decode_responses=True)
    try:
        role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        return str(role[0])
    except OSError:
        return None
    finally:
        await client.aclose()
