"""Several senders over loopback: round-robin, breakers rerouting around a
sender that is down, a rate limit shared by consumer processes, send windows.
Real MariaDB, Redis and mock endpoints."""

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.delivery.pacing import Pacer
from common.store.campaign import PENDING, SENT
from common.testing.mock_gateway import MockWhatsApp
from tests.conftest import drain_queue, start_role
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def second_mock():
    with MockWhatsApp() as server:
        yield server


def keys(ids):
    return {f"campaign_master_1:{i}": 1 for i in ids}


def breaker_state(real_redis, consumer, index):
    return real_redis.hget(f"sender:{consumer.senders.routes[index].name}:breaker", "state") or "closed"


def test_waha_sessions_take_turns(campaign, build, mock):
    producer, consumer = build
    ids = [i for i in campaign.add(60) if i % 2 == 1]
    producer().loop()
    drain_queue(
        consumer(provider="waha", text="Halo!", whatsapp_url=mock.url, waha_session="default,marketing,support")
    )
    assert mock.deliveries() == keys(ids)
    sessions = [body["session"] for body in mock.bodies().values()]
    assert {s: sessions.count(s) for s in set(sessions)} == {"default": 10, "marketing": 10, "support": 10}
    history = campaign.query("SELECT sender, COUNT(*) FROM delivery_attempts GROUP BY sender")
    host = mock.url.removeprefix("http://")
    assert dict(history) == {f"waha:{s}@{host}": 10 for s in ("default", "marketing", "support")}


def test_a_history_table_without_the_sender_column_gets_it_at_start_up(campaign, build, mock):
    campaign.query("ALTER TABLE delivery_attempts DROP COLUMN sender")
    producer, consumer = build
    ids = [i for i in campaign.add(4) if i % 2 == 1]
    producer().loop()
    c = consumer()
    c.initialize()
    c.table.check(need_failure_table=True)  # a second consumer starting finds it there
    drain_queue(c)
    assert campaign.query("SELECT row_id, sender FROM delivery_attempts ORDER BY row_id") == tuple(
        (i, f"webhook:{mock.url.removeprefix('http://')}/test_camp") for i in ids
    )


def test_a_sender_refusing_our_token_is_cut_off_at_once_and_the_other_sends_everything(
    campaign, build, mock, second_mock, real_redis
):
    producer, consumer = build
    second_mock.configure(token="not-ours")  # HTTP 401 for every send
    ids = [i for i in campaign.add(40) if i % 2 == 1]
    producer().loop()
    c = consumer(
        whatsapp_url=f"{mock.url}/test_camp,{second_mock.url}/test_camp", whatsapp_token="ours", breaker_cooldown=60
    )
    drain_queue(c)
    assert mock.deliveries() == keys(ids) and second_mock.deliveries() == {}
    assert all(campaign.states()[i] == SENT for i in ids)
    assert second_mock.stats()["requests"] <= c.settings.concurrency  # only those in flight as it opened
    assert breaker_state(real_redis, c, 1) == "open" and breaker_state(real_redis, c, 0) == "closed"


def test_a_failing_sender_opens_after_n_failures_and_comes_back_after_trials(
    campaign, build, mock, second_mock, real_redis
):
    producer, consumer = build
    second_mock.configure(fail_rate=1.0, fail_status=503)
    ids = campaign.add(80)
    odd = [i for i in ids if i % 2 == 1]
    producer().loop()
    senders = dict(
        whatsapp_url=f"{mock.url}/test_camp,{second_mock.url}/test_camp",
        breaker_failures=3,
        breaker_successes=2,
        breaker_cooldown=1.0,
        max_attempts=10,
    )
    c = consumer(**senders)
    drain_queue(c)
    assert mock.deliveries() == keys(odd) and second_mock.deliveries() == {}
    assert second_mock.stats()["requests"] <= 3 + c.settings.concurrency
    assert breaker_state(real_redis, c, 1) == "open"

    second_mock.configure(fail_rate=0.0)  # it recovers; after the cool-down, trials close its breaker
    time.sleep(1.1)
    producer(index=0).loop()
    drain_queue(consumer(index=0, **senders))
    even = [i for i in ids if i % 2 == 0]
    assert {**mock.deliveries(), **second_mock.deliveries()} == keys(odd + even)
    assert len(second_mock.deliveries()) >= 10  # back in the rotation
    assert breaker_state(real_redis, c, 1) == "closed"


def test_a_breaker_opened_by_one_consumer_stops_every_consumer(campaign, build, mock, second_mock, real_redis):
    producer, consumer = build
    second_mock.configure(token="not-ours")
    ids = campaign.add(40)
    senders = dict(
        whatsapp_url=f"{mock.url}/test_camp,{second_mock.url}/test_camp", whatsapp_token="ours", breaker_cooldown=60
    )
    producer(index=1).loop()
    drain_queue(consumer(index=1, **senders))
    refused = second_mock.stats()["requests"]
    assert refused >= 1

    producer(index=0).loop()
    drain_queue(consumer(index=0, **senders))  # another consumer, which never saw a 401 itself
    assert second_mock.stats()["requests"] == refused
    assert mock.deliveries() == keys(ids)


def test_every_sender_down_keeps_rows_pending_and_claims_nothing(campaign, build, mock, real_redis):
    producer, consumer = build
    mock.configure(token="not-ours")
    ids = [i for i in campaign.add(10) if i % 2 == 1]
    producer().loop()
    c = consumer(whatsapp_token="ours", breaker_cooldown=60)
    for _ in range(20):
        c.loop()
    assert mock.deliveries() == {} and all(campaign.states()[i] == PENDING for i in ids)
    assert not c.may_claim() and mock.stats()["requests"] <= c.settings.concurrency


def window_around(now: datetime, opens_in: timedelta, lasts: timedelta) -> str:
    return f"{now + opens_in:%H:%M}-{now + opens_in + lasts:%H:%M}"


def test_outside_the_send_window_nothing_is_claimed(campaign, build, mock, real_redis):
    producer, consumer = build
    ids = [i for i in campaign.add(10) if i % 2 == 1]
    producer().loop()
    now = datetime.now(UTC)
    closed = consumer(window=window_around(now, timedelta(hours=2), timedelta(hours=1)), timezone="UTC")
    for _ in range(10):
        closed.loop()
    assert mock.deliveries() == {} and all(campaign.states()[i] == PENDING for i in ids)
    assert real_redis.zcard("due:2:1") == len(ids)  # still queued, unclaimed

    drain_queue(consumer(window=window_around(now, timedelta(hours=-1), timedelta(hours=2)), timezone="UTC"))
    assert mock.deliveries() == keys(ids)


RATE, SECONDS = 50, 10


def test_four_consumer_processes_share_one_rate_limit(campaign, build, role_env, mock, real_redis):
    """RATE/s for SECONDS s across four processes (partitions 0..3 of 4), counted at the mock."""
    producer, _ = build
    campaign.add(RATE * SECONDS * 2)
    for k in range(4):
        producer(index=k, of=4, max_queued=10_000).loop()
    env = dict(role_env, RATE=f"{RATE}/s", CONCURRENCY="8", PARTITIONS="4")
    processes = [start_role("consumers", dict(env, PARTITION=str(k))) for k in range(4)]
    try:
        wait_for(lambda: mock.stats()["delivered"] > 0, what="first send")
        time.sleep(SECONDS + 1)
    finally:
        results = [stop(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0], [err[-500:] for _, err in results]
    times = mock.delivery_times()
    in_window = [t for t in times if t < times[0] + SECONDS]
    assert abs(len(in_window) - RATE * SECONDS) <= RATE * SECONDS * 0.05, len(in_window)
    assert mock.stats()["duplicates"] == 0


def paced_times(pacer, count):
    """Reserve and wait for `count` slots in a row; the gaps between the slots
    the pacer granted (ms). Slot times, not wake-up times: a late wake-up is
    the sleeping thread's, and the next slot is still spaced from the slot."""
    slots = []
    while len(slots) < count:
        asked = time.monotonic()
        granted, wait = pacer.reserve()
        if granted:
            slots.append(asked + wait)
        time.sleep(wait)
    return [(b - a) * 1000 for a, b in zip(slots, slots[1:])]


def test_a_rate_spaces_sends_evenly_and_jitter_spreads_the_gaps(real_redis):
    even = paced_times(Pacer(real_redis, "sender:even:pace", rate=100, jitter=0), 30)
    # Evenly: nearly every gap is the 10 ms interval. A late wake-up of this
    # thread (a loaded machine) widens one gap, so not all of them.
    assert 9 <= statistics.median(even) <= 11
    assert sum(8.5 <= gap <= 11.5 for gap in even) >= 0.8 * len(even), even
    jittered = paced_times(Pacer(real_redis, "sender:jitter:pace", rate=100, jitter=0.04), 60)
    assert 22 <= statistics.mean(jittered) <= 38  # 10 ms + 20 ms on average
    assert statistics.pstdev(jittered) > 6 and min(jittered) >= 9
