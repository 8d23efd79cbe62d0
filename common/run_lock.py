"""One copy of a role and partition at a time, for runs from cron: a lock in
Redis with a TTL, renewed while the run lasts, so a run still busy when the
next one starts is not joined by a second copy, and a killed run's lock
expires by itself."""

import logging
import os
import secrets
import socket
import time

import redis

from common.errors import LockHeld, ServiceUnavailable

log = logging.getLogger(__name__)

TTL = 60.0  # seconds a lock outlives its last renewal

# Renew or release only a lock that is still ours (ARGV[1] is our token).
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RunLock:
    def __init__(self, client: redis.Redis, prefix: str, role: str, partition):
        self.client = client
        self.key = f"{prefix}lock:{role}:{partition.of}:{partition.index}"
        self.what = f"{role} for partition {partition}"
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self.next_renewal = 0.0

    def acquire(self) -> None:
        try:
            taken = self.client.set(self.key, self.token, nx=True, px=int(TTL * 1000))
            holder = None if taken else self.client.get(self.key)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unreachable: {exc}") from None
        if not taken:
            holder_host, holder_pid = (holder or "?:?").split(":")[:2]
            raise LockHeld(f"another {self.what} is running (pid {holder_pid} on {holder_host}, lock {self.key}); "
                           "nothing done")
        self.next_renewal = time.monotonic() + TTL / 3

    def renew(self) -> bool:
        """Keep the lock while the run lasts; False once it is no longer ours."""
        if time.monotonic() < self.next_renewal:
            return True
        self.next_renewal = time.monotonic() + TTL / 3
        try:
            return bool(self._renew(keys=[self.key], args=[self.token, int(TTL * 1000)]))
        except redis.RedisError as exc:
            log.debug("could not renew the run lock: %s", exc)
            return True  # it lives TTL seconds; the next renewal may work

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:
            log.debug("could not release the run lock (it expires by itself): %s", exc)
