"""A sender's daily limit of unique recipients, on fakeredis."""

import asyncio

import pytest

from common.delivery.daily_limit import WINDOW_MS, Admission, DailyLimit, usage
from common.delivery.routing import Wait
from common.delivery.sender import Outcome, SendResult
from common.delivery.sticky import ranking
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


def test_a_phone_another_send_relied_on_is_not_given_back(fake_redis):
    """One person in two rows, sent at once: the send that counted the phone
    fails and gives its slot back, the other went through."""
    limit = DailyLimit(fake_redis, "r", 1, "a")
    counted = limit.admit("1")
    assert isinstance(counted, Admission) and limit.admit("1") == Admission("1", None)
    limit.release(counted)
    assert fake_redis.zcard("r") == 1 and isinstance(limit.admit("2"), float)  # still counted: the sender is full
    assert fake_redis.zscore("r", "1") - counted.stamp == 0.5  # its time in the window is unchanged (to the ms)


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


def test_a_recipient_counted_today_goes_through_a_full_sender(fake_redis):
    p = pool(fake_redis, StubSender("a"), daily_limit="1")
    assert asyncio.run(p.turn("1")).route.name == "a"
    assert isinstance(asyncio.run(p.turn("2")), Wait)
    assert not p.ready()
    assert asyncio.run(p.turn("1")).route.name == "a"  # already counted: costs no slot


def test_a_slot_given_back_makes_a_full_sender_claimable_again(fake_redis):
    limit = DailyLimit(fake_redis, "r", 1, "a")
    first = limit.admit("1")
    assert isinstance(limit.admit("2"), float) and 0 < limit.full_for() <= 30  # re-asked within 30 s
    assert isinstance(first, Admission)
    limit.release(first)
    assert limit.full_for() == 0 and isinstance(limit.admit("2"), Admission)


def test_a_sticky_phone_whose_sender_is_full_waits_and_does_not_move(fake_redis):
    p = pool(fake_redis, StubSender("a"), StubSender("b"), daily_limit="1", sticky_sender=True, sticky_fallback=True)
    on_a = [phone for phone in map(str, range(100)) if ranking(["a", "b"], phone)[0] == 0][:2]
    assert asyncio.run(p.turn(on_a[0])).route.name == "a"
    wait = asyncio.run(p.turn(on_a[1]))
    assert isinstance(wait, Wait) and wait.reason == "sender a is at its daily limit of 1" and not wait.stopped
    assert fake_redis.hgetall("sticky") == {}


@pytest.mark.parametrize(
    "result, kept",
    [
        (SendResult(Outcome.RETRY, detail="timed out"), True),  # the recipient may have it
        (SendResult(Outcome.RETRY, detail="connection reset"), True),
        (SendResult(Outcome.RETRY, 503, "HTTP 503"), False),
        (SendResult(Outcome.FAILED, 400, "not on WhatsApp"), False),
        (SendResult(Outcome.SENDER_DOWN, 401, "HTTP 401"), False),
        (SendResult(Outcome.SENT, 200), True),
    ],
)
def test_a_slot_is_given_back_only_when_the_gateway_said_it_did_not_take_the_message(fake_redis, result, kept):
    class Answering(StubSender):
        async def send(self, message):
            return result

    p = pool(fake_redis, Answering("a"), daily_limit="5")
    asyncio.run(asyncio.run(p.turn("1")).send(None))
    assert fake_redis.zcard("sender:a:recipients") == (1 if kept else 0)


def test_a_paced_send_counts_its_recipient_only_once_it_has_its_slot(fake_redis):
    p = pool(fake_redis, StubSender("a"), rate="1/h", daily_limit="5")
    assert asyncio.run(p.turn("1")).route.name == "a"  # the hour's one slot

    async def turn_until_stopped():
        asyncio.get_running_loop().call_later(0.6, p.stop)
        return await p.turn("2")

    assert asyncio.run(turn_until_stopped()) is None
    assert fake_redis.zrange("sender:a:recipients", 0, -1) == ["1"]  # "2" never held a slot of the day
