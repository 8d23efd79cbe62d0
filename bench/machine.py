"""CPU time outside the benchmark's children: the MariaDB and Redis servers it
uses, and everything else on the machine.

The machine is shared (test suites, other services), so each run reports how
much CPU other processes took meanwhile: figures from a busy machine are not
comparable with the issue's.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The process listening on this loopback TCP port, found through /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue  # gone, or not ours to read
    return None


def process_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, elapsed) CPU seconds of all cores together since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@dataclass(frozen=True)
class Snapshot:
    servers: float | None
    busy: float
    elapsed: float


class Meter:
    """CPU of the servers on the given ports, and of the whole machine, between two snapshots."""

    def __init__(self, ports: list[int]):
        self.pids = [listening_pid(port) for port in ports]

    def snapshot(self) -> Snapshot:
        times = [process_cpu_seconds(pid) if pid else None for pid in self.pids]
        servers = None if None in times else sum(times)
        return Snapshot(servers, *machine_cpu_seconds())


@dataclass(frozen=True)
class Interval:
    servers: float | None  # CPU seconds of MariaDB + Redis
    busy: float  # share of all cores busy
    busy_seconds: float  # CPU seconds used on the machine

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> "Interval":
        servers = None if before.servers is None or after.servers is None else after.servers - before.servers
        busy = after.busy - before.busy
        return cls(servers, busy / max(after.elapsed - before.elapsed, 1e-9), busy)
