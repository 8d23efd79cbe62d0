"""The lease keeper: renewals on Redis's clock, and a thread nothing stops."""

import time

import redis

from common.queue.jobs import Job, JobQueue, Lease, now_ms
from common.queue.leases import LeaseKeeper
from common.settings import Partition


def test_time_left_on_a_lease_is_read_on_redis_clock_not_the_hosts():
    keeper = LeaseKeeper(queue=None, lease_seconds=60)
    ahead = 40_000  # Redis's clock is 40 s ahead of this host's
    keeper.hold([1], Lease(until_ms=now_ms() + ahead + 60_000, clock_offset_ms=ahead))
    assert 59_000 < keeper.remaining_ms(1) <= 60_000


class FlakyQueue:
    """A queue whose renewals fail in every way Redis and bugs can fail, then work."""

    partition = Partition(1, 2)

    def __init__(self, real: JobQueue):
        self.real = real
        self.failures = [
            redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'"),
            redis.ReadOnlyError("You can't write against a read only replica."),
            RuntimeError("a bug"),
        ]
        self.renewals = 0

    def extend(self, leases, lease_seconds):
        self.renewals += 1
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, redis.RedisError):
                return self.real._call("extend", self._raise, failure)
            raise failure
        return self.real.extend(leases, lease_seconds)

    @staticmethod
    def _raise(failure):
        raise failure


def test_the_lease_keeper_survives_any_error_and_keeps_renewing(fake_redis):
    real = JobQueue(fake_redis, Partition(1, 2))
    real.enqueue([Job(1, "628100000001")])
    claims, _, _, lease = real.claim(10, lease_seconds=0.3)
    flaky = FlakyQueue(real)
    keeper = LeaseKeeper(flaky, lease_seconds=0.3)
    keeper.hold([1], lease)
    keeper.start()
    try:
        deadline = time.monotonic() + 5
        while flaky.renewals < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        keeper.stop()
    assert flaky.renewals >= 6 and not flaky.failures
    assert keeper.held[1] > lease.until_ms  # renewed after the failures
