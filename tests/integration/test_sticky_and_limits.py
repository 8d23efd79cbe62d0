"""Sticky senders and daily limits on the real services: three WAHA sessions
on one mock gateway are three senders; the history table says which sender
carried each attempt."""

import logging
import time

import pytest

from common.delivery.sticky import ranking
from common.store.campaign import PENDING, SENT

pytestmark = pytest.mark.integration

SESSIONS = "s1,s2,s3"


def waha(consumer, mock, sessions=SESSIONS, **overrides):
    return consumer(provider="waha", text="Halo!", whatsapp_url=mock.url, waha_session=sessions, **overrides)


def senders_by_phone(campaign) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for phone, sender in campaign.query(
        "SELECT c.column1, a.sender FROM delivery_attempts a JOIN campaign_master_1 c ON c.id = a.row_id"
    ):
        found.setdefault(phone, set()).add(sender)
    return found


def cycle(consumers, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "never done"
        for consumer in consumers:
            consumer.loop()
        time.sleep(0.01)
    for consumer in consumers:
        consumer.record()


def test_every_phone_goes_through_one_sender_across_retries_restarts_and_two_consumers(campaign, build, mock):
    producer, consumer = build
    # 120 odd rows: 30 phones with 4 rows each.
    ids = [i for i in campaign.add(240, phone=lambda i: f"628120000{(i // 2) % 30:04d}") if i % 2 == 1]
    mock.configure(fail_rate=0.3)
    producer().loop()
    settings = dict(sticky_sender=True, max_attempts=30, breaker_failures=1000)
    first, second = waha(consumer, mock, **settings), waha(consumer, mock, **settings)
    cycle([first, second], lambda: campaign.count(SENT) >= 40)
    first.shutdown()  # a restart: a new consumer takes over alongside the second
    third = waha(consumer, mock, **settings)
    cycle([second, third], lambda: all(campaign.states()[i] == SENT for i in ids))

    by_phone = senders_by_phone(campaign)
    assert len(by_phone) == 30 and all(len(senders) == 1 for senders in by_phone.values()), by_phone
    names = [route.name for route in third.senders.routes]
    assert all(senders == {names[ranking(names, phone)[0]]} for phone, senders in by_phone.items())
    assert len({next(iter(s)) for s in by_phone.values()}) == 3  # all three senders were used
    retried = campaign.query("SELECT COUNT(*) FROM delivery_attempts WHERE outcome = 'retry'")[0][0]
    assert retried > 10  # the retries went through the same sender too
    assert set(mock.deliveries().values()) == {1} and len(mock.deliveries()) == len(ids)


def test_a_fourth_sender_takes_about_a_quarter_of_the_phones_and_moves_no_others(campaign, build, mock):
    producer, consumer = build
    phones = [f"62813{n:08d}" for n in range(200)]
    campaign.add(400, phone=lambda i: phones[i // 2])  # odd ids: each phone once
    producer().loop()
    cycle([waha(consumer, mock, sticky_sender=True)], lambda: campaign.count(PENDING) == 200)
    before = {phone: next(iter(s)) for phone, s in senders_by_phone(campaign).items()}
    campaign.query("DELETE FROM delivery_attempts")
    campaign.add(400, phone=lambda i: phones[i // 2])
    producer().loop()
    four = waha(consumer, mock, sessions=SESSIONS + ",s4", sticky_sender=True)
    cycle([four], lambda: campaign.count(PENDING) == 200 + 200)  # the even rows stay pending
    after = {phone: next(iter(s)) for phone, s in senders_by_phone(campaign).items()}
    moved = [phone for phone in phones if before[phone] != after[phone]]
    assert {after[phone].split("@")[0] for phone in moved} == {"waha:s4"}
    assert 0.13 < len(moved) / len(phones) < 0.37, len(moved)  # a quarter, four standard deviations either side


def test_with_fallback_a_phone_whose_sender_is_down_moves_once_and_stays(campaign, build, mock, real_redis):
    producer, consumer = build
    ids = [i for i in campaign.add(40, phone=lambda i: f"628140000{(i // 2) % 5:04d}") if i % 2 == 1]
    producer().loop()
    c = waha(consumer, mock, sticky_sender=True, sticky_fallback=True, breaker_cooldown=60)
    names = [route.name for route in c.senders.routes]
    c.senders.routes[0].breaker.record("down", "HTTP 401")  # s1 is stopped for a minute
    cycle([c], lambda: all(campaign.states()[i] == SENT for i in ids))
    by_phone = senders_by_phone(campaign)
    assert all(len(senders) == 1 and names[0] not in senders for senders in by_phone.values())
    moved = {phone for phone in by_phone if ranking(names, phone)[0] == 0}
    assert set(real_redis.hgetall("sticky")) == moved


def test_without_fallback_a_stopped_senders_phones_wait_with_a_warning_and_the_others_go(campaign, build, mock, caplog):
    producer, consumer = build
    ids = [i for i in campaign.add(40, phone=lambda i: f"628140000{(i // 2) % 10:04d}") if i % 2 == 1]
    producer().loop()
    c = waha(consumer, mock, sticky_sender=True, breaker_cooldown=60)
    names = [route.name for route in c.senders.routes]
    phones = dict(campaign.query("SELECT id, column1 FROM campaign_master_1"))
    # The sender names carry the mock's port, so which phones a sender owns
    # changes from run to run: stop the one that owns the first row's phone.
    stopped = ranking(names, phones[ids[0]])[0]
    c.senders.routes[stopped].breaker.record("down", "HTTP 401")  # stopped for a minute
    held = {i for i in ids if ranking(names, phones[i])[0] == stopped}
    assert held and held != set(ids)
    with caplog.at_level(logging.INFO):
        cycle([c], lambda: all(campaign.states()[i] == SENT for i in set(ids) - held))
        c.report(force=True)
    assert all(campaign.states()[i] == PENDING for i in held)
    assert names[stopped] not in {s for senders in senders_by_phone(campaign).values() for s in senders}
    waits = [r for r in caplog.records if f"rows wait: sender {names[stopped]} is stopped" in r.getMessage()]
    assert waits and all(r.levelname == "WARNING" for r in waits)  # someone should look at that sender


def test_a_daily_limit_of_50_sends_to_50_recipients_per_sender_and_the_rest_wait(
    campaign, build, mock, real_redis, caplog
):
    caplog.set_level(logging.INFO)
    producer, consumer = build
    ids = [i for i in campaign.add(400) if i % 2 == 1]  # 200 rows, 200 phones
    producer().loop()
    limited = dict(sessions="s1,s2", daily_limit="50", concurrency=8)
    consumers = [waha(consumer, mock, **limited), waha(consumer, mock, **limited)]
    for c in consumers:
        c.initialize()  # publishes each sender's limit for status
    cycle(consumers, lambda: campaign.count(SENT) >= 100)
    quiet_until = time.monotonic() + 2
    while time.monotonic() < quiet_until:  # nothing more goes out
        for c in consumers:
            c.loop()
        time.sleep(0.02)
    states = campaign.states()
    assert sum(states[i] == SENT for i in ids) == 100 and sum(states[i] == PENDING for i in ids) == 100
    sent_by = campaign.query("SELECT sender, COUNT(DISTINCT row_id) FROM delivery_attempts GROUP BY sender")
    assert sorted(count for _, count in sent_by) == [50, 50]
    assert len(mock.recipients()) == 100
    for route in consumers[0].senders.routes:
        assert real_redis.zcard(f"sender:{route.name}:recipients") == 50
        assert real_redis.get(f"sender:{route.name}:daily_limit") == "50"
    assert "is at its daily limit of 50 recipients; next slot in 1440 min" in caplog.text
    # The rest wait in the queue: those handed back wait minutes; the others are not even claimed.
    assert real_redis.zcard("due:2:1") == 100 and real_redis.hlen("leased:2:1") == 0
    assert mock.stats()["requests"] == 100 and not any(c.senders.ready() for c in consumers)
    for c in consumers:
        c.report(force=True)
    waits = [r for r in caplog.records if "rows wait: sender waha:s" in r.getMessage()]
    assert waits and all(r.levelname == "INFO" for r in waits)  # a full sender needs only time, not a look
