"""The run lock: renewed while ours, taken back when Redis lost it, and a
stop only when another copy really holds it."""

import logging

import fakeredis
import pytest

from common.errors import LockHeld
from common.queue.run_lock import RunLock
from common.settings import Partition

KEY = "lock:consumer:2:1"


def renewed_now(lock: RunLock) -> None:
    lock.next_renewal = 0.0  # renewals are spaced RENEW_EVERY apart; the tests don't wait
    lock.renew()


def test_a_second_copy_cannot_take_a_held_lock(fake_redis):
    RunLock(fake_redis, "", "consumer", Partition(1, 2)).acquire()
    with pytest.raises(LockHeld, match="another consumer for partition 1/2 is running"):
        RunLock(fake_redis, "", "consumer", Partition(1, 2)).acquire()


def test_a_lock_redis_lost_is_taken_back_with_one_line(fake_redis, caplog):
    lock = RunLock(fake_redis, "", "consumer", Partition(1, 2))
    lock.acquire()
    fake_redis.flushdb()
    renewed_now(lock)
    renewed_now(lock)
    assert fake_redis.get(KEY) == lock.token and fake_redis.pttl(KEY) > 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"the run lock {KEY} was gone (Redis restarted or was flushed); took it back"
    ]


def test_a_lock_another_copy_holds_stops_the_renewal_with_lock_held(fake_redis):
    lock = RunLock(fake_redis, "", "consumer", Partition(1, 2))
    lock.acquire()
    fake_redis.set(KEY, "otherhost:999:beef")
    with pytest.raises(LockHeld, match="pid 999 on otherhost"):
        renewed_now(lock)
    assert fake_redis.get(KEY) == "otherhost:999:beef"


def test_a_redis_error_during_renewal_keeps_the_run_going():
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    lock = RunLock(client, "", "consumer", Partition(1, 2))
    lock.acquire()
    server.connected = False
    renewed_now(lock)
    server.connected = True
    renewed_now(lock)
    assert client.get(KEY) == lock.token
