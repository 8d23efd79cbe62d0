"""Prometheus metrics of a real consumer process, scraped over HTTP."""

import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from common.store.campaign import PENDING
from common.testing.services import free_port
from tests.conftest import run_role, start_role
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict:
    """(metric sample name, frozenset of labels) -> value."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_consumer_exposes_sends_by_outcome_latency_retries_and_queue_depth(campaign, role_env, mock, real_redis):
    ids = [i for i in campaign.add(40) if i % 2 == 1]
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    mock.configure(fail_first=1, fail_status=503)  # every row: one retry, then sent
    port = free_port()
    consumer = start_role("consumers.odd", dict(role_env, METRICS_PORT=str(port), BREAKER_FAILURES="1000"))
    try:
        wait_for(lambda: campaign.count(PENDING) == 20, what="odd rows sent")
        wait_for(
            lambda: scrape(port).get(("campaign_queue_depth", frozenset({("partition", "1/2")}))) == 0,
            timeout=10,
            what="queue depth 0",
        )
        samples = scrape(port)
    finally:
        code, err = stop(consumer)
    assert code == 0, err[-500:]
    sender = f"webhook:127.0.0.1:{mock.url.rsplit(':', 1)[1]}/test_camp"
    labels = {("partition", "1/2"), ("provider", "webhook"), ("sender", sender)}
    assert samples[("campaign_sends_total", frozenset(labels | {("outcome", "sent")}))] == len(ids)
    assert samples[("campaign_sends_total", frozenset(labels | {("outcome", "retry")}))] == len(ids)
    assert samples[("campaign_retries_total", frozenset({("partition", "1/2")}))] == len(ids)
    assert samples[("campaign_send_seconds_count", frozenset({("provider", "webhook")}))] == 2 * len(ids)
    assert samples[("campaign_breaker_open", frozenset({("sender", sender)}))] == 0


def test_jobs_taken_over_from_a_killed_consumer_are_counted_as_lease_reclaims(campaign, role_env, mock, real_redis):
    ids = [i for i in campaign.add(60) if i % 2 == 1]
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    mock.configure(latency_ms=300)
    victim = start_role("consumers.odd", role_env)
    wait_for(lambda: mock.stats()["in_flight"] >= 2, what="sends in flight")
    victim.kill()  # dies holding leases it will never finish or hand back
    victim.communicate()
    held = real_redis.hlen("leased:2:1")
    assert held > 0
    mock.configure(latency_ms=0)
    port = free_port()
    survivor = start_role("consumers.odd", dict(role_env, METRICS_PORT=str(port)))
    try:
        wait_for(lambda: campaign.count(PENDING) == 30, timeout=30, what="odd rows sent after the leases lapsed")
        samples = scrape(port)
    finally:
        code, err = stop(survivor)
    assert code == 0, err[-500:]
    assert samples[("campaign_leases_reclaimed_total", frozenset({("partition", "1/2")}))] == held
    assert real_redis.hget("stats:2:1", "reclaimed") == str(held)  # what status reads, cron runs included
    assert real_redis.hlen("leased:2:1") == 0
    assert set(mock.deliveries()) == {f"campaign_master_1:{i}" for i in ids}


def test_a_port_in_use_is_one_line_and_exit_2(campaign, role_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_role("consumers.odd", dict(role_env, METRICS_PORT=str(busy.getsockname()[1])), "--once")
    assert result.returncode == 2 and "cannot serve metrics" in result.stderr and "Traceback" not in result.stderr
