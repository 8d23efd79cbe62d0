"""The status snapshot the web service shares among its clients (and the
funnel `status --watch` throttles), and what routes answer without reaching
MySQL, through Flask's test client."""

import threading
import time

import pytest

from common.ops.api import Web
from common.ops.snapshot import Throttled
from common.ops.web import create_app
from common.store.ingest import IngestRules
from common.store.receipts import percentile


class SlowCount:
    """Stands in for the row count: takes `seconds` (of `clock`'s time when
    given, else slept) and counts its calls."""

    def __init__(self, seconds: float, clock: "Clock | None" = None):
        self.seconds = seconds
        self.clock = clock
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        if self.clock:
            self.clock.now += self.seconds
        else:
            time.sleep(self.seconds)
        return {"count": self.calls}


class Clock:
    """time.monotonic for a test that runs 1.2 s of polling in no time."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll_for(clock: Clock, seconds: float, look) -> None:
    """`look()` every 10 ms of clock time for `seconds`."""
    end = clock.now + seconds
    while clock.now < end:
        look()
        clock.now += 0.01


def test_clients_at_once_share_one_count():
    count = SlowCount(0.2)
    shared = Throttled(count, min_age=5)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(shared())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count.calls == 1 and answers == [{"count": 1}] * 8


def test_a_slow_count_is_repeated_at_most_every_ten_times_its_duration(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    count = SlowCount(0.05, clock)
    shared = Throttled(count, min_age=0.01, cost_factor=10)
    poll_for(clock, 1.2, shared)
    # 0.05 s counts, then 0.5 s of reuse each: at 0, 0.55 and 1.1 s, not ~24.
    assert count.calls == 3


def test_clear_makes_the_next_client_see_a_fresh_count():
    count = SlowCount(0)
    shared = Throttled(count, min_age=60)
    assert shared() == shared() == {"count": 1}
    shared.clear()
    assert shared() == {"count": 2}


def steering_app(client):
    """The app with only Redis behind it: pausing never reads the table."""
    web = Web(open_table=None, client=client, prefix="", of=2, rules=IngestRules(set(), "hello_world", None))
    return create_app(web, credentials=None).test_client()


def test_a_post_to_a_route_without_post_is_a_405_not_a_415(fake_redis):
    assert steering_app(fake_redis).post("/api/status").status_code == 405


@pytest.mark.parametrize("raw", ['{"partition": 1', '{"partition": 1, "all": true}', "[" * 50_000, "null"])
def test_a_pause_body_that_is_not_an_object_with_a_partition_pauses_nothing(fake_redis, raw):
    answer = steering_app(fake_redis).post("/api/pause", data=raw, content_type="application/json")
    assert answer.status_code == 400 and answer.json["error"] and not fake_redis.keys("paused*")


def test_a_pause_without_a_body_pauses_the_whole_campaign(fake_redis):
    answer = steering_app(fake_redis).post("/api/pause", content_type="application/json")
    assert answer.json == {"paused": True, "partition": None} and fake_redis.exists("paused")


@pytest.mark.parametrize("body", [{"reason": 5}, {"reason": "timeout", "partition": 2}, {"failed": True}, ["x"]])
def test_a_resend_body_outside_the_document_is_a_400_before_the_table_is_read(fake_redis, body):
    answer = steering_app(fake_redis).post("/api/resend", json=body)  # the app has no table: reading it would fail
    assert answer.status_code == 400 and "reason" in answer.json["error"]


@pytest.mark.parametrize(
    "route, body",
    [
        ("/api/optouts", {"phones": []}),
        ("/api/optouts", {"phones": "6281234567890"}),
        ("/api/optouts", {"phones": [6281234567890]}),
        ("/api/optouts", {"phones": ["6281234567890"], "reason": 7}),
        ("/api/optouts", {"phones": ["6281234567890"], "source": "me"}),
        ("/api/optouts", {"reason": "no phones"}),
        ("/api/optouts", {"phones": ["6281234567890", "0812"]}),  # national, and no DEFAULT_REGION
        ("/api/optouts/remove", {"phones": ["not a phone"]}),
        ("/api/optouts/remove", {"phones": ["6281234567890"], "reason": "x"}),
        ("/api/resend", {"undelivered": "yes"}),
        ("/api/resend", {"undelivered": True, "reason": "timeout"}),
    ],
)
def test_an_opt_out_or_resend_body_that_is_wrong_is_a_400_before_the_table_is_read(fake_redis, route, body):
    answer = steering_app(fake_redis).post(route, json=body)  # the app has no table: reading it would fail
    assert answer.status_code == 400 and answer.json["error"]


def test_an_invalid_phone_is_named_by_its_place_in_the_list(fake_redis):
    answer = steering_app(fake_redis).post("/api/optouts", json={"phones": ["+6281234567890", "12ab"]})
    assert answer.status_code == 400 and answer.json["error"].startswith("phone 1: phone has characters")
    assert "nothing was changed" in answer.json["error"]


@pytest.mark.parametrize("limit", ["0", "10001", "-1", "1.5", "abc", "\u0661", "9" * 5000])
def test_a_list_limit_outside_1_to_10000_is_a_400(fake_redis, limit):
    answer = steering_app(fake_redis).get("/api/optouts", query_string={"limit": limit})
    assert answer.status_code == 400 and "limit" in answer.json["error"]


def test_percentiles_are_nearest_rank():
    ordered = [float(n) for n in range(1, 13)]
    assert (percentile(ordered, 0.5), percentile(ordered, 0.95)) == (6.0, 12.0)
    assert percentile([3.0], 0.95) == 3.0 and percentile([], 0.5) is None
