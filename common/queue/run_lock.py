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

from common.errors import LockHeld
from common.queue import keys
from common.queue.jobs import redis_failure

log = logging.getLogger(__name__)

TTL = 60.0  # seconds a lock outlives its last renewal
# Renewing often costs one call every few seconds and bounds how long a lock
# that Redis lost (restart, flush) stays free for a second copy to take.
RENEW_EVERY = 2.0

# Renew a lock that is still ours (ARGV[1] is our token) and take back one
# that vanished. Returns 1 when renewed, 0 when taken back, or the token of
# the copy that holds it now.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
return holder
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def describe_holder(token: str | None) -> str:
    """The holder as `pid 123 on host`, from its token (host:pid:random)."""
    host, pid = ((token or "?:?").split(":") + ["?"])[:2]
    return f"pid {pid} on {host}"


class RunLock:
    def __init__(self, client: redis.Redis, prefix: str, role: str, partition):
        self.client = client
        self.key = keys.run_lock(prefix, role, partition)
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
            raise redis_failure("take the run lock", exc) from None
        if not taken:
            raise LockHeld(f"another {self.what} is running ({describe_holder(holder)}, lock {self.key}); nothing done")
        self.next_renewal = time.monotonic() + RENEW_EVERY

    def renew(self) -> None:
        """Keep the lock while the run lasts, and take it back if Redis lost it.
        Raises LockHeld once another copy holds it."""
        if time.monotonic() < self.next_renewal:
            return
        self.next_renewal = time.monotonic() + RENEW_EVERY
        try:
            result = self._renew(keys=[self.key], args=[self.token, int(TTL * 1000)])
        except redis.RedisError as exc:
            log.debug("could not renew the run lock: %s", exc)
            return  # it lives TTL seconds; the next renewal may work
        if result == 0:
            log.warning("the run lock %s was gone (Redis restarted or was flushed); took it back", self.key)
        elif result != 1:
            raise LockHeld(
                f"another {self.what} took the run lock {self.key} ({describe_holder(result)}) "
                "while this one ran (it stalled for over a minute, or Redis lost the lock); stopped"
            )

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:
            log.debug("could not release the run lock (it expires by itself): %s", exc)
