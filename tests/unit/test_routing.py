"""Choosing a sender: round-robin, breakers, start-up probes (fakeredis, stub senders)."""

import asyncio
import time

import pytest

from common.delivery.routing import SenderPool, breaker_outcome
from common.delivery.sender import Outcome, SendResult
from common.errors import ConfigError, ServiceUnavailable
from common.settings import MySQLTarget, Partition, Settings


class StubSender:
    def __init__(self, name, problem=None):
        self.name = name
        self.problem = problem

    def probe(self):
        if self.problem:
            raise self.problem

    async def send(self, message):
        return SendResult(Outcome.SENT, 200)

    def close(self):
        pass


PHONE = "6281234567890"


def run(coroutine):
    return asyncio.run(coroutine)


def run_reported(route, result, started):
    return asyncio.run(route.reported(result, started))


def pool(fake_redis, *senders, **settings):
    values = dict(database=MySQLTarget("h", 3306, "u", "", "d"), redis_url="redis://x", partition=Partition(1, 2))
    return SenderPool.build(list(senders), fake_redis, Settings(**{**values, **settings}))


def test_turns_go_round_the_senders_and_skip_one_whose_breaker_is_open(fake_redis):
    p = pool(fake_redis, StubSender("a"), StubSender("b"), StubSender("c"))
    assert [run(p.turn(PHONE)).route.name for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    run_reported(p.routes[1], SendResult(Outcome.SENDER_DOWN, 401, "HTTP 401"), time.monotonic())
    assert [run(p.turn(PHONE)).route.name for _ in range(4)] == ["a", "c", "c", "a"]
    assert p.ready()


def test_with_every_breaker_open_there_is_no_turn_and_no_claiming(fake_redis):
    p = pool(fake_redis, StubSender("a"))
    run_reported(p.routes[0], SendResult(Outcome.SENDER_DOWN, 401, "HTTP 401"), time.monotonic())
    assert run(p.turn(PHONE)) is None and not p.ready()


def test_a_sender_refusing_us_at_start_up_is_cut_off_while_the_others_start(fake_redis, caplog):
    p = pool(fake_redis, StubSender("a", ConfigError("endpoint a refused our credentials")), StubSender("b"))
    p.probe()
    assert fake_redis.hget("sender:a:breaker", "state") == "open"
    assert "endpoint a refused our credentials; sending through the other senders" in caplog.text
    assert {run(p.turn(PHONE)).route.name for _ in range(3)} == {"b"}


def test_start_up_fails_only_when_no_sender_can_be_used(fake_redis):
    p = pool(
        fake_redis,
        StubSender("a", ServiceUnavailable("a is unreachable")),
        StubSender("b", ServiceUnavailable("b is unreachable")),
    )
    with pytest.raises(ServiceUnavailable, match="a is unreachable"):
        p.probe()


def test_two_senders_with_one_name_are_refused(fake_redis):
    with pytest.raises(ConfigError, match="same name"):
        pool(fake_redis, StubSender("a"), StubSender("a"))


@pytest.mark.parametrize(
    "result, outcome",
    [
        (SendResult(Outcome.SENT, 200), "ok"),
        (SendResult(Outcome.FAILED, 400, "bad number"), "ok"),  # the row's fault, not the sender's
        (SendResult(Outcome.RETRY, 503), "fail"),
        (SendResult(Outcome.RETRY, detail="timed out"), "fail"),
        (SendResult(Outcome.RETRY, 429, "timelock", retry_after=3600, per_row=True), "ok"),
        (SendResult(Outcome.SENDER_DOWN, 401), "down"),
    ],
)
def test_what_a_send_tells_the_breaker(result, outcome):
    assert breaker_outcome(result) == outcome


def test_failures_of_sends_that_began_before_a_success_do_not_open_the_breaker(fake_redis):
    """Hung sends left in flight when a consumer stops claiming time out together."""
    p = pool(fake_redis, StubSender("a"), breaker_failures=3)
    route = p.routes[0]
    began = time.monotonic()
    run_reported(route, SendResult(Outcome.SENT, 200), time.monotonic())
    for _ in range(5):
        run_reported(route, SendResult(Outcome.RETRY, detail="timed out"), began)
    assert fake_redis.hget("sender:a:breaker", "state") is None
    for _ in range(3):
        run_reported(route, SendResult(Outcome.RETRY, detail="timed out"), time.monotonic())
    assert fake_redis.hget("sender:a:breaker", "state") == "open"


def test_turns_that_find_no_paced_slot_give_their_half_open_trial_back(fake_redis):
    p = pool(fake_redis, StubSender("a"), rate="1/h", breaker_successes=2, breaker_cooldown=0.05)
    run_reported(p.routes[0], SendResult(Outcome.SENDER_DOWN, 401), time.monotonic())
    time.sleep(0.1)
    assert run(p.turn(PHONE)).trial  # takes the one slot of the hour

    async def turn_until_stopped():
        asyncio.get_running_loop().call_later(0.3, p.stop)  # the next finds no slot until stopped
        return await p.turn(PHONE)

    assert run(turn_until_stopped()) is None
    assert fake_redis.hget("sender:a:breaker", "trials") == "1"  # its trial went back; one is still out


class CrashingSender(StubSender):
    async def send(self, message):
        raise KeyError("a bug in a sender")


def test_a_send_that_raises_is_a_failed_send_its_half_open_breaker_hears_of(fake_redis):
    p = pool(fake_redis, CrashingSender("a"), breaker_failures=1, breaker_cooldown=0.01, breaker_successes=1)
    route = p.routes[0]
    route.breaker.record("down", "HTTP 401")
    time.sleep(0.02)
    turn = run(p.turn(PHONE))
    assert turn is not None and turn.trial
    result = run(turn.send(None))
    assert result.outcome is Outcome.RETRY and result.detail == "internal error: KeyError"
    assert fake_redis.hget(route.breaker.key, "state") == "open"  # the trial was reported, not left hanging
