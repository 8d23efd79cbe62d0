"""What status and the web API show of campaign timing, on the real
services: jobs due now apart from those due later (scheduled or waiting for
a retry) and when the next is due; each sender's daily limit."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import schemathesis
from playwright.sync_api import sync_playwright

from common.delivery.daily_limit import WINDOW_MS
from common.ops.openapi import document
from common.ops.snapshot import partition_view
from common.ops.status_text import clock, hh_mm
from common.queue.jobs import JobQueue
from common.settings import Partition
from common.store.campaign import SENT
from tests.integration.test_status import status, status_json
from tests.integration.test_sticky_and_limits import cycle, waha
from tests.integration.test_web import AUTH, chromium, web  # noqa: F401  (the service as a process)

pytestmark = pytest.mark.integration

ODD = Partition(1, 2)
MINUTE_MS = 60_000


def one_line(text: str) -> str:
    """Status text with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def timed_queue(campaign, build, real_redis):
    """Partition 1/2's queue holding every kind of job: rows 1, 3, 5, 7 and 9
    queued now, of which 1 is leased for 5 min, 3 went back to wait an hour
    for a retry and 5 was leased and its lease lapsed; rows 11 and 13
    scheduled 20 min and 2 h ahead. Returns the unix ms row 11 is due at."""
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column7 DATETIME NULL")
    soon = (datetime.now(UTC) + timedelta(minutes=20)).replace(microsecond=0)
    for row_id in range(1, 14, 2):
        scheduled = {11: soon, 13: soon + timedelta(hours=2)}.get(row_id)
        campaign.query(
            "INSERT INTO campaign_master_1 (id, column1, column7) VALUES (%s, %s, %s)",
            (row_id, f"62812{row_id:08d}", scheduled.strftime("%Y-%m-%d %H:%M:%S") if scheduled else None),
        )
    producer, _ = build
    producer(schedule_column="column7", timezone="UTC").loop()
    queue = JobQueue(real_redis, ODD)
    assert queue.depth() == 7
    held = queue.claim(1, 300)[0][0]
    retrying = queue.claim(1, 300)[0][0]
    assert queue.reschedule([(retrying.row_id, retrying.lease_until_ms, 60 * MINUTE_MS, None)]) == 1
    lapsed = queue.claim(1, 0.05)[0][0]
    time.sleep(0.1)
    assert real_redis.hkeys("leased:2:1") == [str(held.row_id), str(lapsed.row_id)]
    return int(soon.timestamp() * 1000)


def test_status_counts_jobs_due_now_apart_from_scheduled_and_retrying_ones_and_says_when_the_next_is_due(
    timed_queue, role_env
):
    odd = status_json(role_env)["partitions"][1]
    # Due now: the two never claimed and the lapsed lease; later: the retry and the two
    # scheduled rows; the job leased for 5 min is neither, and its earlier score is not the next due.
    assert (odd["queued"], odd["due_later"]) == (3, 3)
    assert odd["next_due_ms"] == timed_queue
    assert odd["last_due_ms"] == timed_queue + 120 * MINUTE_MS  # row 13; the retry is due in 1 h
    assert odd["next_due_in_seconds"] == pytest.approx(1200, abs=10)
    text = one_line(status(role_env))
    assert f"1/2: 3 due later (scheduled or retrying), the next at {clock(timed_queue)} (in 20 min)" in text
    assert "0/2:" not in text  # nothing due later in the even partition


def test_a_hundred_thousand_scheduled_jobs_are_counted_without_reading_them(campaign, real_redis):
    now = int(time.time() * 1000)
    scheduled = {str(i): now + 10 * MINUTE_MS + i for i in range(2, 200_002, 2)}
    leased = {str(i): now + MINUTE_MS + i for i in range(1, 401, 2)}  # 200 leases, all ending before them
    for start in range(0, len(scheduled), 10_000):
        real_redis.zadd("due:2:0", dict(list(scheduled.items())[start : start + 10_000]))
    real_redis.zadd("due:2:0", leased)
    real_redis.hset("leased:2:0", mapping=leased)
    before = real_redis.info("stats")["total_net_output_bytes"]
    view = partition_view({}, real_redis, "", Partition(0, 2), [])
    answered = real_redis.info("stats")["total_net_output_bytes"] - before
    assert (view["queued"], view["due_later"]) == (0, 100_000)
    assert view["next_due_ms"] == now + 10 * MINUTE_MS + 2
    assert view["last_due_ms"] == now + 10 * MINUTE_MS + 200_000
    # Two ZCOUNTs and a few hundred lookups answer a few kilobytes (this
    # INFO's answer among them); reading every job would be megabytes.
    assert answered < 100_000, answered


def test_status_says_when_a_sender_at_its_daily_limit_gets_its_next_slot(campaign, build, mock, role_env, real_redis):
    producer, consumer = build
    campaign.add(40)  # 20 odd rows, 20 phones
    producer().loop()
    c = waha(consumer, mock, sessions="s1,s2", daily_limit="5,50")
    c.initialize()  # publishes each sender's limit for status
    cycle([c], lambda: campaign.count(SENT) == 20)
    full, free = (route.name for route in c.senders.routes)
    assert real_redis.zcard(f"sender:{full}:recipients") == 5
    used = real_redis.zcard(f"sender:{free}:recipients")
    assert used == 15
    oldest = real_redis.zrange(f"sender:{full}:recipients", 0, 0, withscores=True)[0][1]
    # The slot frees when the oldest recipient leaves the 24 h window; either
    # side of a minute's edge, since status reads the time a moment later.
    slot = int(oldest) + WINDOW_MS
    at = {hh_mm(slot - 2_000), hh_mm(slot + 2_000)}
    senders = {s["name"]: s["daily_limit"] for s in status_json(role_env)["senders"]}
    assert senders[full]["at_limit"] and (senders[full]["used"], senders[full]["limit"]) == (5, 5)
    assert senders[full]["next_slot_in_seconds"] == pytest.approx(WINDOW_MS / 1000, abs=60)
    assert senders[free] | {"used": None} == {
        "limit": 50,
        "used": None,
        "at_limit": False,
        "next_slot_in_seconds": None,
        "next_slot_ms": None,
    }
    text = one_line(status(role_env))
    assert any(f"{full}: at daily limit (5/5), next slot at {hh_mm_at}" in text for hh_mm_at in at), text
    assert f"{free}: daily limit: 15/50 used" in text


def test_the_status_api_with_jobs_due_later_and_a_sender_at_its_limit_is_what_the_document_says(
    timed_queue,
    web,  # noqa: F811
    real_redis,
):
    real_redis.sadd("senders", "waha:s1", "waha:s2", "waha:s3")
    real_redis.set("sender:waha:s1:daily_limit", 2)
    now = time.time() * 1000
    # Two recipients in the window and one counted more than 24 h ago, which no longer counts.
    real_redis.zadd(
        "sender:waha:s1:recipients", {"6281200000001": now - 2000, "6281200000002": now - 1000, "6281200000003": 1}
    )
    real_redis.set("sender:waha:s2:daily_limit", 50)
    real_redis.hset("sender:waha:s3:breaker", mapping={"state": "open", "until": int(time.time() * 1000) + 30_000})
    answer = requests.get(f"{web}/api/status", auth=AUTH, timeout=10)
    view = answer.json()
    odd = view["partitions"][1]
    assert (odd["queued"], odd["due_later"], odd["next_due_ms"]) == (3, 3, timed_queue)
    senders = {s["name"]: s for s in view["senders"]}
    assert senders["waha:s1"]["daily_limit"]["at_limit"] and senders["waha:s1"]["daily_limit"]["used"] == 2
    assert senders["waha:s2"]["daily_limit"]["used"] == 0 and senders["waha:s3"]["daily_limit"] is None
    assert senders["waha:s3"]["opens_for_trial_in"] > 0
    schemathesis.openapi.from_dict(document(2))["/api/status"]["GET"].validate_response(answer)


def test_the_dashboard_shows_jobs_due_later_with_the_next_due_time_and_the_daily_limits(
    timed_queue,
    web,  # noqa: F811
    real_redis,
):
    now = time.time() * 1000
    real_redis.sadd("senders", "waha:s1", "waha:s2")
    real_redis.set("sender:waha:s1:daily_limit", 2)
    real_redis.zadd("sender:waha:s1:recipients", {"6281200000001": now - 2000, "6281200000002": now - 1000})
    real_redis.set("sender:waha:s2:daily_limit", 50)
    real_redis.zadd("sender:waha:s2:recipients", {"6281200000003": now})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(
            http_credentials={"username": AUTH[0], "password": AUTH[1]}, viewport={"width": 390, "height": 844}
        )
        page.goto(f"{web}/")
        page.wait_for_function("document.getElementById('state').textContent !== 'loading'")
        odd, total = 'tr[data-partition="1/2"]', 'tr[data-partition="total"]'
        assert (page.inner_text(f"{odd} td.queued"), page.inner_text(f"{odd} td.due_later")) == ("3", "3")
        # The browser's local time is the test's: HH:MM, then how long until it.
        expected = page.evaluate(
            f"new Date({timed_queue}).toLocaleTimeString('en-GB', {{hour: '2-digit', minute: '2-digit'}})"
        )
        for row in (odd, total):
            next_due = page.inner_text(f"{row} td.next_due")
            assert next_due.startswith(expected) and next_due.endswith("in 20 min"), next_due
        assert page.inner_text('tr[data-partition="0/2"] td.next_due') == "-"
        slot = page.evaluate(
            f"new Date({now - 2000} + 86400000).toLocaleTimeString('en-GB', {{hour: '2-digit', minute: '2-digit'}})"
        )
        limit = 'tr[data-sender="waha:{}"] td.daily_limit'
        assert page.inner_text(limit.format("s1")) == f"at daily limit (2/2), next slot at {slot}"
        assert page.inner_text(limit.format("s2")) == "daily limit: 1/50 used"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
        browser.close()
