"""A sender's daily limit of unique recipients, on fakeredis."""

import asyncio

from common.delivery.daily_limit import WINDOW_MS, Admission, DailyLimit, usage
from common.delivery.routing import Wait
from tests.unit.test_routing import StubSender, pool


def test_new_recipients_take_slots_and_known_ones_are_free(fake_redis):
    limit = DailyLimit(fake_redis, "r", 2, "a")
    first = limit.admit("1")
    assert isinstance(first, Admission) and first.stamp
    assert limit.admit("1") == Admission("1", None)  # already counted today
    assert isinstance(limit.admit("2"), Admission)
    wait = limit.admit("3")
    assert isinstance(wait, float) and WINDOW_MS / 1000 - 5 < wait <= WINDOW_MS / 1000
    assert limit.full_for() > 0


def test_a_released_slot_goes_to_the_next_recipient(fake_redis):
    limit = DailyLimit(fake_redis, "r", 1, "a")
    admission = limit.admit("1")
    assert isinstance(admission, Admission)
    limit.release(admission)
    assert isinstance(limit.admit("2"), Admission)


def test_recipients_older_than_a_day_leave_the_window(fake_redis):
    limit = DailyLimit(fake_redis, "r", 1, "a")
    fake_redis.zadd("r", {"old": 1000})  # counted in 1970
    assert isinstance(limit.admit("new"), Admission)
    assert fake_redis.zrange("r", 0, -1) == ["new"]


def test_a_full_sender_is_skipped_and_the_row_waits_when_all_are_full(fake_redis):
    p = pool(fake_redis, StubSender("a"), StubSender("b"), daily_limit="1,2")
    p.probe()
    names = [asyncio.run(p.turn(phone)).route.name for phone in ("1", "2", "3")]
    assert sorted(names) == ["a", "b", "b"]
    wait = asyncio.run(p.turn("4"))
    assert isinstance(wait, Wait) and wait.reason.endswith("at its daily limit of 1") and wait.seconds == 300
    assert not p.ready()
    assert usage(fake_redis, "sender:b:recipients", "sender:b:daily_limit")["used"] == 2
    status = usage(fake_redis, "sender:a:recipients", "sender:a:daily_limit")
    assert status["limit"] == 1 and status["used"] == 1 and status["next_slot_in"] > 86_000
