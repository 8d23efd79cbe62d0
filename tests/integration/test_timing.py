"""Campaign timing on the real services: a row's own send time, a start for
the whole campaign, and validity: a message past it fails "expired" and is
never sent late, whatever held it up."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from common.queue.pause import set_paused
from common.store.campaign import FAILED, PENDING, SENT

pytestmark = pytest.mark.integration


def wall(seconds_from_now: float) -> str:
    """A UTC wall-clock time as a DATETIME column or START_AT holds it."""
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def timed(campaign):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column7 DATETIME NULL, ADD COLUMN column8 VARCHAR(10)")
    return campaign


def add(campaign, row_id: int, schedule: str | None = None, valid_for: str | None = None) -> int:
    """A row with this id (odd ids: partition 1 of 2, the one these tests run)."""
    campaign.query(
        "INSERT INTO campaign_master_1 (id, column1, column7, column8) VALUES (%s, %s, %s, %s)",
        (row_id, f"62812{row_id:08d}", schedule, valid_for),
    )
    return row_id


def run_until(consumer, producer, done, timeout: float) -> float:
    """Cycle both roles until `done()`; returns the seconds it took."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, "never done"
        producer.loop()
        consumer.loop()
        time.sleep(0.02)
    consumer.record()
    return time.monotonic() - started


def test_a_row_scheduled_20_s_ahead_goes_out_within_a_poll_interval_after_and_not_before(timed, build, mock):
    producer, consumer = build
    now_row = add(timed, 1)
    later = add(timed, 3, schedule=wall(20))
    p = producer(schedule_column="column7", timezone="UTC", poll_interval=0.2)
    c = consumer()
    started = time.monotonic()
    run_until(c, p, lambda: timed.states()[now_row] == SENT, timeout=10)
    while time.monotonic() - started < 18.5:
        p.loop()
        c.loop()
        time.sleep(0.05)
    assert timed.states()[later] == PENDING and mock.stats()["requests"] == 1
    took = run_until(c, p, lambda: timed.states()[later] == SENT, timeout=10)
    assert 18.5 + took <= 20 + 0.2 + 1.0  # due at 20 s (to the second), sent within a poll interval and a margin
    assert mock.deliveries() == {f"campaign_master_1:{now_row}": 1, f"campaign_master_1:{later}": 1}


def test_a_campaign_held_with_start_at_sends_nothing_early(timed, build, mock):
    producer, consumer = build
    rows = [add(timed, i) for i in (1, 3)]
    start_at = wall(3)  # 2 to 3 s ahead: START_AT is to the second
    due = datetime.strptime(start_at, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    p = producer(start_at=start_at, timezone="UTC")
    c = consumer()
    while time.time() < due - 0.2:
        p.loop()
        c.loop()
        time.sleep(0.05)
    assert mock.stats()["requests"] == 0
    run_until(c, p, lambda: all(timed.states()[r] == SENT for r in rows), timeout=10)
    first_sent = mock.delivery_times()[0] + (time.time() - time.monotonic())
    assert first_sent >= due - 0.05  # the two clocks, read a moment apart


def test_rows_past_their_validity_fail_expired_without_a_request(timed, build, mock):
    producer, consumer = build
    timed.query("ALTER TABLE campaign_master_1 MODIFY column7 VARCHAR(30)")  # text schedules work too
    stale = add(timed, 1, schedule=wall(-4 * 3600))  # scheduled 4 h ago, valid for 3 h
    own_short = add(timed, 3, schedule=wall(-2 * 3600), valid_for="1h")  # its own validity: 1 h
    own_long = add(timed, 5, schedule=wall(-2 * 3600), valid_for="3h")
    odd = add(timed, 7, schedule="not a time")
    p = producer(schedule_column="column7", valid_for="3h", valid_for_column="column8", timezone="UTC")
    c = consumer()
    p.loop()
    for _ in range(50):
        c.loop()
    c.record()
    states, reasons = timed.states(), timed.failure_reasons()
    assert (states[stale], reasons[stale]) == (FAILED, "expired")
    assert (states[own_short], reasons[own_short]) == (FAILED, "expired")
    assert states[own_long] == SENT
    assert states[odd] == FAILED and "column7 is not a time" in reasons[odd]
    assert mock.deliveries() == {f"campaign_master_1:{own_long}": 1}


def test_a_pause_longer_than_the_validity_lets_nothing_out_late(timed, build, mock, real_redis):
    producer, consumer = build
    rows = [add(timed, i) for i in (1, 3, 5)]
    p = producer(valid_for="2s")
    c = consumer()
    set_paused(real_redis, c.settings.key_prefix, None, True)
    p.loop()
    started = time.monotonic()
    while time.monotonic() - started < 3.5:  # paused for longer than the rows are valid
        c.loop()
        time.sleep(0.05)
    set_paused(real_redis, c.settings.key_prefix, None, False)
    time.sleep(1.1)  # the pause switch is read at most once a second
    run_until(c, p, lambda: all(timed.states()[r] != PENDING for r in rows), timeout=10)
    assert [timed.failure_reasons().get(r) for r in rows] == ["expired"] * 3
    assert mock.stats()["requests"] == 0


def test_a_timestamp_schedule_is_the_same_moment_whatever_the_sessions_time_zone(campaign, build, real_redis):
    """MySQL hands a TIMESTAMP over in the session's time zone; a DATETIME is wall-clock in SEND_TIMEZONE."""
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column7 TIMESTAMP NULL, ADD COLUMN column9 DATETIME NULL")
    campaign.query("SET time_zone = '+00:00'")
    campaign.query(
        "INSERT INTO campaign_master_1 (id, column1, column7, column9) VALUES"
        " (1, '6281200000001', '2030-01-01 02:00:00', NULL), (3, '6281200000003', NULL, '2030-01-01 09:00:00')"
    )
    producer, _ = build
    two_am_utc = datetime(2030, 1, 1, 2, tzinfo=UTC).timestamp() * 1000  # 09:00 in Jakarta
    for column, row in (("column7", "1"), ("column9", "3")):
        real_redis.flushdb()
        p = producer(schedule_column=column, timezone="Asia/Jakarta")
        p.initialize()
        p.table._execute("SET time_zone = '-05:00'")  # neither UTC nor Jakarta
        p.loop()
        assert real_redis.zscore("due:2:1", row) == two_am_utc, column
