"""Pausing a campaign or one partition: a key in Redis that consumers read
at most once a second; while it is there they claim nothing, and resume
where they were when it is gone. Producers keep queueing."""

import logging
import time

import redis

from common.queue import keys
from common.settings import Partition

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds a read of the pause keys is trusted


def set_paused(client: redis.Redis, prefix: str, partition: Partition | None, paused: bool) -> None:
    key = keys.paused(prefix, partition)
    if paused:
        client.set(key, round(time.time(), 3))
    else:
        client.delete(key)


class PauseSwitch:
    """What one consumer reads: the whole campaign's pause and its partition's."""

    def __init__(self, client: redis.Redis, prefix: str, partition: Partition):
        self.client = client
        self.keys = [keys.paused(prefix), keys.paused(prefix, partition)]
        self.paused = False
        self.checked = float("-inf")

    def is_paused(self) -> bool:
        if time.monotonic() - self.checked >= CHECK_EVERY:
            self.checked = time.monotonic()
            try:
                paused = self.client.exists(*self.keys) > 0
            except redis.RedisError:
                return self.paused  # the consumer's own Redis calls report the outage
            if paused != self.paused:
                log.warning("paused: no new sends until resumed" if paused else "resumed")
            self.paused = paused
        return self.paused
