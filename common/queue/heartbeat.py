"""Each running process says, every few seconds, that it is alive and what it
is doing: a hash per process in Redis, indexed by a sorted set of last beats,
so `status` finds them without scanning the keyspace."""

import logging
import os
import socket
import time
from collections.abc import Callable

import redis

from common.errors import ConfigError
from common.queue import keys
from common.queue.jobs import redis_failure

log = logging.getLogger(__name__)

BEAT_EVERY = 5.0  # seconds between beats
ALIVE_FOR = 15.0  # a process not heard from for this long is no longer listed
FORGET_AFTER = 3600.0  # index entries older than this are removed


class Heartbeat:
    def __init__(self, client: redis.Redis, prefix: str, role: str, partition):
        self.client = client
        self.index = keys.processes(prefix)
        self.key = keys.process(prefix, socket.gethostname(), os.getpid(), role)
        self.identity = {
            "role": role,
            "partition": str(partition),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(time.time(), 3),
        }
        self.next_beat = 0.0

    def beat(self, vitals: Callable[[], dict]) -> None:
        """Best effort, at most every BEAT_EVERY seconds: status must never stop
        work. `vitals` is only asked for when a beat is due."""
        if time.monotonic() < self.next_beat:
            return
        self.next_beat = time.monotonic() + BEAT_EVERY
        now = time.time()
        try:
            pipe = self.client.pipeline(transaction=False)
            fields: dict = {**self.identity, **vitals(), "beat": round(now, 3)}
            pipe.hset(self.key, mapping=fields)
            pipe.pexpire(self.key, int(ALIVE_FOR * 1000))
            pipe.zadd(self.index, {self.key: now})
            pipe.zremrangebyscore(self.index, "-inf", now - FORGET_AFTER)
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("no heartbeat: %s", exc)

    def stop(self) -> None:
        try:
            self.client.delete(self.key)
            self.client.zrem(self.index, self.key)
        except redis.RedisError as exc:
            log.debug("could not remove the heartbeat: %s", exc)


def live_processes(client: redis.Redis, prefix: str) -> list[dict]:
    """Processes heard from in the last ALIVE_FOR seconds, oldest first."""
    found = client.zrangebyscore(keys.processes(prefix), time.time() - ALIVE_FOR, "+inf")
    pipe = client.pipeline(transaction=False)
    for key in found:
        pipe.hgetall(key)
    return [values for values in pipe.execute() if values]


def check_layout(client: redis.Redis, prefix: str, role: str, partition) -> None:
    """Refuse to join live processes that split the campaign into another
    number of partitions: jobs queued under one layout sit in keys the other
    never reads, and rows would be sent under both. Our own beat never counts."""
    try:
        others = [
            process
            for process in live_processes(client, prefix)
            if (process.get("host"), process.get("pid")) != (socket.gethostname(), str(os.getpid()))
        ]
    except redis.RedisError as exc:
        raise redis_failure("read the live processes", exc) from None
    clashing = [process for process in others if layout_of(process) not in (None, str(partition.of))]
    if clashing:
        roles = " and ".join(sorted({f"{process.get('role', 'process')}s" for process in clashing}))
        layouts = ", ".join(sorted({str(layout_of(process)) for process in clashing}))
        raise ConfigError(
            f"live {roles} of this campaign use N={layouts} partitions and this {role} "
            f"N={partition.of}: stop them all (or let the queue drain first), then start the new layout"
        )


def layout_of(process: dict) -> str | None:
    """N of a heartbeat's partition "K/N"."""
    _, slash, of = process.get("partition", "").partition("/")
    return of if slash else None
