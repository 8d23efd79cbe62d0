"""Sticky senders: the ranking is stable and moves few phones when a sender
is added; a phone waits for its stopped sender, or falls over and stays."""

import asyncio
import time

from common.delivery.routing import Wait
from common.delivery.sender import Outcome, SendResult
from common.delivery.sticky import ranking
from tests.unit.test_routing import StubSender, pool

PHONES = [f"62812{n:08d}" for n in range(4000)]


def owner(senders, phone):
    return senders[ranking(senders, phone)[0]]


def test_each_phone_has_one_sender_whatever_the_order_senders_are_listed_in():
    three = ["a", "b", "c"]
    assert all(owner(three, p) == owner(list(reversed(three)), p) for p in PHONES)
    shares = {s: sum(owner(three, p) == s for p in PHONES) for s in three}
    assert all(1200 < n < 1470 for n in shares.values()), shares


def test_adding_a_fourth_sender_moves_about_a_quarter_of_the_phones_and_only_to_it():
    three, four = ["a", "b", "c"], ["a", "b", "c", "d"]
    moved = [p for p in PHONES if owner(three, p) != owner(four, p)]
    assert 0.22 < len(moved) / len(PHONES) < 0.28
    assert {owner(four, p) for p in moved} == {"d"}


def sender_for(p, phone):
    return asyncio.run(p.turn(phone))


def stop(p, index):
    p.routes[index].breaker.record("down", "HTTP 401")


def test_a_sticky_phone_always_gets_its_own_sender(fake_redis):
    p = pool(fake_redis, StubSender("a"), StubSender("b"), StubSender("c"), sticky_sender=True)
    for phone in PHONES[:50]:
        names = {sender_for(p, phone).route.name for _ in range(5)}
        assert names == {owner(["a", "b", "c"], phone)}


def test_without_fallback_a_phone_waits_while_its_sender_is_stopped(fake_redis):
    p = pool(fake_redis, StubSender("a"), StubSender("b"), sticky_sender=True, breaker_cooldown=20)
    phone = next(ph for ph in PHONES if owner(["a", "b"], ph) == "a")
    other = next(ph for ph in PHONES if owner(["a", "b"], ph) == "b")
    stop(p, 0)
    wait = sender_for(p, phone)
    assert isinstance(wait, Wait) and wait.reason == "sender a is stopped" and 19 < wait.seconds <= 20
    assert wait.stopped  # someone should look at the sender: the consumer logs it as a warning
    assert sender_for(p, other).route.name == "b" and p.ready()


def test_with_fallback_a_phone_moves_to_its_next_sender_and_stays_there(fake_redis):
    settings = dict(sticky_sender=True, sticky_fallback=True, breaker_cooldown=0.05, breaker_successes=1)
    p = pool(fake_redis, StubSender("a"), StubSender("b"), StubSender("c"), **settings)
    phone = next(ph for ph in PHONES if ranking(["a", "b", "c"], ph)[:2] == [0, 1])
    stop(p, 0)
    assert sender_for(p, phone).route.name == "b"
    assert fake_redis.hget("sticky", phone) == "b"
    time.sleep(0.1)  # a's cool-down is over: a trial would go through it
    later = pool(fake_redis, StubSender("a"), StubSender("b"), StubSender("c"), **settings)  # another consumer
    later.recall([phone])
    assert {sender_for(later, phone).route.name for _ in range(3)} == {"b"}


class RefusedNumber(StubSender):
    async def send(self, message):
        return SendResult(Outcome.FAILED, 400, "not a WhatsApp number")


def test_a_turn_not_used_or_not_sent_gives_its_daily_slot_back(fake_redis):
    p = pool(fake_redis, RefusedNumber("a"), daily_limit="1")
    turn = sender_for(p, PHONES[0])
    assert fake_redis.zcard("sender:a:recipients") == 1
    asyncio.run(turn.give_back())  # e.g. expired just before the request
    assert fake_redis.zcard("sender:a:recipients") == 0
    turn = sender_for(p, PHONES[1])
    assert asyncio.run(turn.send(None)).outcome is Outcome.FAILED
    assert fake_redis.zcard("sender:a:recipients") == 0
    assert sender_for(p, PHONES[2]).route.name == "a"  # the slot is free for the next recipient
