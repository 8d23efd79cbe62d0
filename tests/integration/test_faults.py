"""The delivery guarantee under faults: endpoint trouble, slow sends, MySQL away.

Every test counts sends at the mock: nothing lost, nothing sent twice.
"""

import json
import threading
import time

import pytest

from common.delivery.engines import ENGINES
from common.store.campaign import PENDING, SENT
from tests.conftest import database_url, drain_queue, start_role
from tests.integration.test_processes import stop, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

MYSQL_OUTAGE_SECONDS = 30
# Endpoint faults must read the same through every HTTP engine.
EVERY_ENGINE = pytest.mark.parametrize("engine", sorted(ENGINES))


def send_all(campaign, build, rows=20, **consumer_settings):
    producer, consumer = build
    ids = [i for i in campaign.add(rows) if i % 2 == 1]
    producer().loop()
    drain_queue(consumer(max_attempts=20, **consumer_settings), timeout=30)
    return ids


def assert_sent_once(campaign, mock, ids):
    states = campaign.states()
    assert all(states[i] == SENT for i in ids)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}


@EVERY_ENGINE
def test_a_burst_of_5xx_is_ridden_out(campaign, build, mock, engine):
    mock.configure(fail_first=3, fail_status=503)
    ids = send_all(campaign, build, http_engine=engine)
    assert_sent_once(campaign, mock, ids)
    assert mock.stats()["by_status"]["503"] == 3 * len(ids)


@EVERY_ENGINE
def test_a_429_without_retry_after_backs_off_and_is_sent_once(campaign, build, mock, engine):
    mock.configure(fail_first=2, fail_status=429)
    ids = send_all(campaign, build, http_engine=engine)
    assert_sent_once(campaign, mock, ids)


@EVERY_ENGINE
def test_connection_resets_are_retried_and_sent_once(campaign, build, mock, engine):
    mock.configure(reset_rate=0.3)
    ids = send_all(campaign, build, http_engine=engine)
    assert_sent_once(campaign, mock, ids)


@EVERY_ENGINE
def test_timeouts_are_retried_and_sent_once(campaign, build, mock, engine):
    mock.configure(timeout_rate=0.3, hang_seconds=1.5)
    ids = send_all(campaign, build, request_timeout=0.5, http_engine=engine)
    assert_sent_once(campaign, mock, ids)


@EVERY_ENGINE
def test_bodies_that_are_not_json_are_read_by_status_alone(campaign, build, mock, engine):
    mock.configure(plain_body=True, fail_first=1, fail_status=502)
    ids = send_all(campaign, build, http_engine=engine)
    assert_sent_once(campaign, mock, ids)


def test_a_send_slower_than_the_lease_is_not_sent_twice(campaign, build, mock):
    """Two consumers on one partition, a lease of 1 s and sends of 2.5 s: the
    lease keeper renews the leases of sends in flight, so the second consumer
    never claims them."""
    producer, consumer = build
    ids = [i for i in campaign.add(16) if i % 2 == 1]
    producer().loop()
    mock.configure(latency_ms=2500)
    pair = [consumer(lease_seconds=1, request_timeout=5) for _ in range(2)]
    for c in pair:
        c.leases.start()
    threads = [threading.Thread(target=drain_queue, args=(c, 30)) for c in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_sent_once(campaign, mock, ids)


def sent_markers(redis_client) -> int:
    return sum(1 for key in redis_client.scan_iter("job:*") if json.loads(redis_client.get(key) or "{}").get("sent"))


def test_mysql_away_for_30_s_keeps_every_2xx_and_sends_nothing_twice(campaign, role_env, mock, mysql_db, real_redis):
    proxy = TcpProxy(mysql_db.host, mysql_db.port)
    via_proxy = database_url(mysql_db).replace(f":{mysql_db.port}/", f":{proxy.port}/")
    env = {**role_env, "DATABASE_URL": via_proxy.replace(mysql_db.host, "127.0.0.1", 1)}
    # 40 rows per partition: 5 s of sends at 4 in flight, so both consumers
    # are mid-send together even when one starts seconds after the other.
    ids = campaign.add(80)
    mock.configure(latency_ms=500)
    roles = {m: start_role(m, env) for m in ["producers.odd", "producers.even", "consumers.odd", "consumers.even"]}
    wait_for(lambda: mock.stats()["in_flight"] >= 8, what="sends in flight")
    delivered_before = mock.stats()["delivered"]
    proxy.cut()
    cut_at = time.monotonic()
    # The sends in flight end with a 2xx that MySQL cannot hear of: kept in Redis.
    wait_for(lambda: sent_markers(real_redis) >= 4, what="2xx kept in Redis")
    # Claimed jobs not yet started are held back while MySQL is away.
    wait_for(lambda: mock.stats()["in_flight"] == 0, what="no send in flight")
    # Every 2xx since the cut is kept in Redis once its answer is read (a few ms after the mock wrote it).
    wait_for(
        lambda: sent_markers(real_redis) >= mock.stats()["delivered"] - delivered_before,
        timeout=5,
        what="every 2xx since the cut kept in Redis",
    )
    roles["consumers.odd"].kill()  # dies still holding them
    roles["consumers.odd"].communicate()
    time.sleep(max(0.0, MYSQL_OUTAGE_SECONDS - (time.monotonic() - cut_at)))
    survivors = {m: p for m, p in roles.items() if m != "consumers.odd"}
    assert all(p.poll() is None for p in survivors.values()), "a process exited during the outage"
    proxy.restore()
    survivors["consumers.odd (successor)"] = start_role("consumers.odd", env)
    try:
        wait_for(lambda: campaign.count(PENDING) == 0, timeout=60, what="every row sent after the outage")
    finally:
        results = {m: stop(p) for m, p in survivors.items()}
        proxy.cut()
    assert all(code == 0 for code, _ in results.values()), results
    assert_sent_once(campaign, mock, ids)
    # Each row's one 'sent' history line names its message, those the killed
    # consumer kept in Redis (and its successor recorded) included.
    sent_lines = campaign.query("SELECT row_id, message_id FROM delivery_attempts WHERE outcome = 'sent'")
    assert sorted(row_id for row_id, _ in sent_lines) == sorted(ids)
    assert len({message_id for _, message_id in sent_lines if message_id}) == len(ids)
    producer_log = results["producers.odd"][1]
    assert producer_log.count("retrying with backoff") == 1, producer_log  # once per outage, not per poll
    assert "Traceback" not in "".join(err for _, err in results.values())
