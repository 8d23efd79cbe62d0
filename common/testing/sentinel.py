"""A throwaway Redis Sentinel group on loopback ports: a primary, a replica
and three sentinels (quorum 2), each a redis-server of its own without
persistence, for failover tests and the chaos run. Sentinels notice a dead
primary after a second and promote the replica."""

import subprocess
from pathlib import Path

import redis

from common.testing.processes import spawn, stop_process, wait_until
from common.testing.services import RedisServer, free_port, installed

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000


class Replica(RedisServer):
    def __init__(self, workdir: Path, logs: Path, primary: RedisServer):
        super().__init__(workdir, logs)
        self.primary = primary

    def listening(self) -> list[str]:
        return [*super().listening(), "--replicaof", "127.0.0.1", str(self.primary.port)]


class SentinelServer:
    def __init__(self, workdir: Path, logs: Path, primary_port: int):
        self.workdir = workdir
        self.port = free_port()
        self.log = logs / f"sentinel-{self.port}.log"
        self.config = workdir / f"sentinel-{self.port}.conf"  # sentinels rewrite their own
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.process: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)

    def start(self, binary: str) -> None:
        self.process = spawn([binary, str(self.config), "--sentinel"], self.log)

    def knows_the_group(self) -> bool:
        """Sees the primary, its replica and the two other sentinels."""
        try:
            master = self.client().sentinel_master(SERVICE)
        except redis.RedisError:
            return False
        return master.get("num-slaves", 0) >= 1 and master.get("num-other-sentinels", 0) >= 2

    def stop(self) -> None:
        stop_process(self.process, 10)


class SentinelGroup:
    def __init__(self, workdir: Path, logs: Path):
        for name in ("primary", "replica"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        self.primary = RedisServer(workdir / "primary", _own_dir(logs / "primary"))
        self.replica = Replica(workdir / "replica", _own_dir(logs / "replica"), self.primary)
        self.sentinels = [SentinelServer(workdir, logs, self.primary.port) for _ in range(3)]
        self.log = logs / "sentinel-group.log"

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        wait_until(self.replicating, 20, "the replica in sync with the primary", self.replica.log)
        binary = installed(self.primary.binary, "redis-server")
        for sentinel in self.sentinels:
            sentinel.start(binary)
        for sentinel in self.sentinels:
            wait_until(sentinel.knows_the_group, 30, "a sentinel seeing the whole group", sentinel.log)

    def replicating(self) -> bool:
        try:
            return self.replica.client().info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def primary_port(self) -> int | None:
        """The primary the sentinels name now."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def kill_primary(self) -> RedisServer:
        """SIGKILL whichever server is primary now; returns it."""
        current = self.replica if self.primary_port() == self.replica.port else self.primary
        current.kill()
        return current

    def promoted(self) -> bool:
        """The replica is the primary now, and says so itself."""
        try:
            role = self.replica.client().info("replication").get("role")
        except redis.RedisError:
            return False
        return self.primary_port() == self.replica.port and role == "master"

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in (self.replica, self.primary):
            server.stop()


def _own_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
