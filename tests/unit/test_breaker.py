"""The circuit breaker's states, kept in (fake) Redis and shared by every Breaker on the same key."""

import time

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.delivery import breaker as breaker_module
from common.delivery.breaker import Breaker, BreakerPolicy

POLICY = BreakerPolicy(failures=3, cooldown=0.2, successes=2, trial_timeout=5)


@pytest.fixture
def make(fake_redis, monkeypatch):
    monkeypatch.setattr(breaker_module, "REFRESH", 0.0)  # always read the shared state

    def build(policy=POLICY):
        return Breaker(fake_redis, "sender:a:breaker", "a", policy)

    return build


def state(fake_redis):
    return fake_redis.hget("sender:a:breaker", "state") or "closed"


def test_it_opens_after_n_consecutive_failures_only(make, fake_redis):
    b = make()
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        b.record(outcome)
    assert state(fake_redis) == "closed" and b.allow()  # the success in between reset the count
    b.record("fail")
    assert state(fake_redis) == "open" and not b.allow()


def test_a_sender_down_answer_opens_it_at_once(make, fake_redis):
    b = make()
    b.record("down", "HTTP 401: bad token")
    assert state(fake_redis) == "open" and not b.allow()
    assert fake_redis.hget("sender:a:breaker", "reason") == "HTTP 401: bad token"
    assert 0 < b.available_in() <= POLICY.cooldown


def test_after_the_cooldown_a_few_trials_go_through_and_their_successes_close_it(make, fake_redis):
    b = make()
    b.record("down")
    time.sleep(POLICY.cooldown + 0.05)
    assert b.allow() == b.allow() == "trial"  # two trials: as many as the successes needed
    assert not b.allow() and state(fake_redis) == "half_open"
    b.record("ok")
    assert state(fake_redis) == "half_open"
    b.record("ok")
    assert state(fake_redis) == "closed" and b.allow()


def test_a_failed_trial_opens_it_again(make, fake_redis):
    b = make()
    b.record("down")
    time.sleep(POLICY.cooldown + 0.05)
    assert b.allow()
    b.record("fail")
    assert state(fake_redis) == "open" and not b.allow()


def test_every_breaker_on_the_key_sees_the_same_state(make, fake_redis):
    first, second = make(), make()
    assert second.allow()
    first.record("down")
    assert not second.allow()  # another consumer, another host: the same Redis key


def test_a_late_success_does_not_close_an_open_breaker(make, fake_redis):
    b = make()
    b.record("down")
    b.record("ok")  # a send that started before it opened
    assert state(fake_redis) == "open"


def test_a_trial_given_back_can_be_taken_again(make, fake_redis):
    b = make()
    b.record("down")
    time.sleep(POLICY.cooldown + 0.05)
    assert b.allow() == b.allow() == "trial" and b.allow() is None
    b.give_back_trial()  # allowed, then not sent (no paced slot, a stop)
    assert b.allow() == "trial"


def test_an_answer_read_before_the_breaker_opened_does_not_overwrite_the_open_state(fake_redis):
    """Two sends' threads: one reads "closed" from Redis, the other's 401 opens
    the breaker and is kept here before the first answer is. The older
    "closed" must not be trusted for the next sends."""
    b = Breaker(fake_redis, "sender:a:breaker", "a", BreakerPolicy(cooldown=60))
    read_closed = b._allow

    def allow_overtaken_by_a_401(*args, **kwargs):
        answer = read_closed(*args, **kwargs)
        b.record("down", "HTTP 401")  # the other thread, done first
        return answer

    b._allow = allow_overtaken_by_a_401
    assert b.allow() == "closed"  # what Redis said when it was asked
    assert b.known() is None and b.available_in() > 59  # what holds now: open


answers = st.lists(
    st.tuples(st.sampled_from(["closed", "open", "half_open"]), st.sampled_from([0, 30_000]), st.integers(0, 10**16)),
    min_size=1,
    max_size=12,
)


@given(answers)
def test_in_whatever_order_answers_are_kept_the_one_redis_gave_last_wins(answers):
    b = Breaker(fakeredis.FakeRedis(decode_responses=True), "sender:a:breaker", "a", BreakerPolicy())
    for state, left_ms, seen_at in answers:
        b.remember(state, left_ms, seen_at, failures_known=False)
    newest = max(seen_at for _, _, seen_at in answers)
    state, left_ms, _ = [answer for answer in answers if answer[2] == newest][-1]  # a tie: the later kept
    assert b.state == state and b.seen_at == newest
    assert (b.known() is None) == (state == "open" and left_ms > 0)
