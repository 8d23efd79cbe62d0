"""A Redis failover mid-campaign, on real servers: a primary, a replica and
three sentinels started by the test, the four processes on 5,000 rows, and
the primary killed with SIGKILL while they send. Replication is
asynchronous, so the last writes before the kill may be lost (a job, a
lease); MySQL stays the source of truth, producers queue again what is
still pending, and a send repeated because its lease was lost carries the
same idempotency key."""

import time

import pytest

from common.store.campaign import PENDING, SENT
from common.testing.sentinel import SentinelGroup
from tests.conftest import start_role
from tests.integration.test_processes import ROLES, stop, wait_for

pytestmark = pytest.mark.integration

ROWS = 5000


@pytest.fixture
def sentinels(tmp_path):
    (tmp_path / "logs").mkdir()
    group = SentinelGroup(tmp_path / "redis", tmp_path / "logs")
    group.start()
    yield group
    group.stop()


def longest_pause(times: list[float], after: float) -> float:
    """The longest time without a send, from `after` on."""
    later = [t for t in times if t >= after]
    return max((b - a for a, b in zip([after, *later], later)), default=0.0)


def test_a_redis_failover_mid_campaign_loses_nothing_and_stops_no_process(campaign, role_env, mock, sentinels):
    env = {**role_env, "REDIS_URL": sentinels.url, "FULL_SCAN_INTERVAL": "2", "CONCURRENCY": "8"}
    campaign.add(ROWS)
    mock.configure(latency_ms=10)
    processes = {module: start_role(module, env) for module in ROLES}
    try:
        wait_for(lambda: campaign.count(SENT) >= ROWS // 3, timeout=60, what="a third of the rows sent")
        killed_at = time.monotonic()
        sentinels.kill_primary()
        wait_for(sentinels.promoted, timeout=30, what="the replica promoted")
        promoted_after = time.monotonic() - killed_at
        wait_for(lambda: campaign.count(PENDING) == 0, timeout=120, what="every row sent")
        running = {module: process.poll() is None for module, process in processes.items()}
    finally:
        results = {module: stop(process) for module, process in processes.items()}
    assert all(running.values()), running
    assert all(code == 0 for code, _ in results.values()), {m: err[-800:] for m, (_, err) in results.items()}
    logs = {module: err for module, (_, err) in results.items()}
    assert not any("Traceback" in err for err in logs.values())
    for module, err in logs.items():
        assert err.count("Redis failed over: the primary of mymaster is now") == 1, (module, err[-800:])

    deliveries = mock.deliveries()
    assert len(deliveries) == ROWS  # every row, each under its own key
    repeats = sum(deliveries.values()) - ROWS
    # A repeat needs a lease lost with the primary: at most what both consumers held then.
    assert repeats <= 2 * 2 * int(env["CONCURRENCY"]), repeats
    pause = longest_pause(mock.delivery_times(), killed_at)
    print(f"failover: promoted after {promoted_after:.1f} s, no sends for {pause:.1f} s, {repeats} repeats")
    assert pause < 30
