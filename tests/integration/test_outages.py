"""A service that goes away while the processes run is waited for, not fatal."""

import shutil
import socket
import subprocess
import time

import pytest

from common.store.campaign import PENDING
from common.testing.services import free_port
from tests.conftest import start_role
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration


def start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10, what="redis up")
    return process


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server to run a Redis it may stop")
def test_redis_restarting_empty_mid_run_loses_nothing(campaign, role_env, mock):
    port = free_port()
    redis_server = start_redis(port)
    env = {**role_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    campaign.add(100)
    mock.configure(latency_ms=20)
    producer, consumer = start_role("producers.odd", env), start_role("consumers.odd", env)
    try:
        wait_for(lambda: mock.stats()["delivered"] >= 5, what="sends under way")
        redis_server.terminate()
        redis_server.wait()
        time.sleep(2)
        assert producer.poll() is None and consumer.poll() is None
        redis_server = start_redis(port)
        wait_for(lambda: campaign.count(PENDING) == 50, what="odd rows sent after the outage")
    finally:
        (p_code, p_err), (c_code, c_err) = stop(producer), stop(consumer)
        redis_server.terminate()
        redis_server.wait()
    assert (p_code, c_code) == (0, 0), (p_err, c_err)
    assert p_err.count("retrying with backoff") == 1  # one line per outage, not per poll
    assert "Traceback" not in p_err + c_err
    deliveries = mock.deliveries()
    assert len(deliveries) == 50
    # Only sends in flight when Redis went away may repeat (same idempotency key).
    assert sum(deliveries.values()) - 50 <= 2 * int(env["CONCURRENCY"])
