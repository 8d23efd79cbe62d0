"""A Redis that answers but refuses (maxmemory reached, a replica answering
READONLY, a long script making it BUSY) is waited for like one that is
down: every process keeps running and every row is sent once."""

import threading
import time

import pytest
import redis

from common.store.campaign import PENDING
from common.testing.chaos.faults import BUSY_SCRIPT
from common.testing.services import free_port
from tests.conftest import start_role
from tests.integration.test_outages import start_redis
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration

REFUSAL_SECONDS = 2.0


def out_of_memory(client):
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    time.sleep(REFUSAL_SECONDS)
    client.config_set("maxmemory", "0")


def read_only(client):
    client.replicaof("127.0.0.1", free_port())  # a primary that is not there: writes get READONLY
    time.sleep(REFUSAL_SECONDS)
    client.replicaof("NO", "ONE")


def busy(client):
    client.config_set("busy-reply-threshold", "100")
    runner = threading.Thread(target=client.eval, args=(BUSY_SCRIPT, 0, REFUSAL_SECONDS))
    runner.start()
    runner.join()


def test_redis_refusing_writes_is_waited_for_and_loses_nothing(campaign, role_env, mock):
    port = free_port()
    server = start_redis(port)
    env = {**role_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    client = redis.Redis(port=port, socket_timeout=30)
    campaign.add(400)
    mock.configure(latency_ms=100)
    roles = {m: start_role(m, env) for m in ("producers.odd", "consumers.odd")}
    try:
        for refusal in (out_of_memory, read_only, busy):
            before = mock.stats()["delivered"]
            wait_for(
                lambda before=before: mock.stats()["delivered"] >= before + 10, what=f"sends before {refusal.__name__}"
            )
            refusal(client)
            assert all(p.poll() is None for p in roles.values()), f"a process exited during {refusal.__name__}"
        wait_for(lambda: campaign.count(PENDING) == 200, timeout=60, what="every odd row sent")
    finally:
        results = {m: stop(p) for m, p in roles.items()}
        server.terminate()
        server.wait()
    assert all(code == 0 for code, _ in results.values()), results
    logs = "".join(err for _, err in results.values())
    assert "Traceback" not in logs
    assert "Redis is unavailable" in logs
    deliveries = mock.deliveries()
    assert len(deliveries) == 200
    # Only a send whose 2xx could not be recorded while Redis refused may repeat, with the same key.
    assert sum(deliveries.values()) - 200 <= 3 * int(env["CONCURRENCY"])
