"""An --exclusive role keeps its run lock through a Redis that lost it, and
stops (exit 4) only when another copy really holds it."""

import time

import pytest

from common.errors import EXIT_LOCKED
from common.store.campaign import SENT
from tests.conftest import run_role, start_role
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration

KEY = "lock:consumer:2:1"


def lock_of(process, real_redis) -> str:
    """The lock's token, once `process` holds it (tokens are host:pid:random)."""
    wait_for(lambda: real_redis.get(KEY), timeout=15, what="the run lock taken")
    token = real_redis.get(KEY)
    assert token.split(":")[1] == str(process.pid)
    return token


def test_an_exclusive_consumer_takes_its_lock_back_after_redis_is_flushed(campaign, role_env, real_redis):
    consumer = start_role("consumers.odd", role_env, "--exclusive")
    try:
        token = lock_of(consumer, real_redis)
        real_redis.flushdb()
        wait_for(lambda: real_redis.get(KEY) == token, timeout=10, what="the lock taken back")
        second = run_role("consumers.odd", role_env, "--exclusive", timeout=20)
        campaign.add(4)
        assert run_role("producers.odd", role_env, "--once").returncode == 0
        wait_for(lambda: campaign.count(SENT) == 2, timeout=10, what="the odd rows sent after the flush")
        assert consumer.poll() is None
    finally:
        code, err = stop(consumer)
    assert code == 0, err
    assert err.count("took it back") == 1, err
    assert second.returncode == EXIT_LOCKED and "another consumer for partition 1/2" in second.stderr


def test_an_exclusive_consumer_whose_lock_another_copy_took_stops_with_exit_4(campaign, role_env, real_redis):
    consumer = start_role("consumers.odd", role_env, "--exclusive")
    try:
        lock_of(consumer, real_redis)
        real_redis.set(KEY, "otherhost:999:beef")
        started = time.monotonic()
        _, err = consumer.communicate(timeout=15)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == EXIT_LOCKED, err
    assert time.monotonic() - started < 10 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            "consumer: error: another consumer for partition 1/2 took the "
            "run lock lock:consumer:2:1 (pid 999 on otherhost)"
        )
    )
    assert real_redis.get(KEY) == "otherhost:999:beef"  # not ours to release
