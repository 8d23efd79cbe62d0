"""What status shows of campaign timing, in fakeredis: jobs due now apart
from those due later (scheduled or retrying) and when the next is due, and
each sender's daily limit; and how the status text says it."""

import time
from datetime import datetime, timedelta

import pytest
from rich.console import Console

from common.delivery.daily_limit import WINDOW_MS
from common.ops.snapshot import breaker_views, eta_seconds, partition_view
from common.ops.status_text import clock, daily_limit_text, due_later_line, from_now, render
from common.queue.jobs import now_ms
from common.settings import Partition

ODD = Partition(1, 2)
MINUTE = 60_000
UNDER_LIMIT = {"at_limit": False, "next_slot_in_seconds": None, "next_slot_ms": None}


def queue(client, due: dict[str, int], leased: dict[str, int]) -> dict:
    """A due set {id: ms from now} with these jobs leased {id: lease end, ms from now}; its partition view."""
    now = now_ms()
    for row_id, offset in due.items():
        client.zadd("due:2:1", {row_id: now + offset})
    for row_id, offset in leased.items():
        client.zadd("due:2:1", {row_id: now + offset})
        client.hset("leased:2:1", row_id, now + offset)
    return partition_view({}, client, "", ODD, [])


def test_due_now_lapsed_leases_and_jobs_due_later_are_counted_apart(fake_redis):
    view = queue(
        fake_redis,
        due={"1": -5_000, "3": 0, "5": 10 * MINUTE, "7": 20 * MINUTE},  # two due now, a retry, a scheduled row
        leased={"9": 5 * MINUTE, "11": -1_000},  # one held, one whose lease lapsed
    )
    assert (view["queued"], view["due_later"]) == (3, 2)
    assert view["next_due_in_seconds"] == pytest.approx(600, abs=1)
    assert view["next_due_ms"] == pytest.approx(now_ms() + 10 * MINUTE, abs=1_000)


def test_the_next_due_skips_leases_that_end_before_it(fake_redis):
    leased = {str(i): MINUTE + i for i in range(1, 40, 2)}  # twenty leases, all ending before the scheduled job
    view = queue(fake_redis, due={"41": 30 * MINUTE}, leased=leased)
    assert (view["queued"], view["due_later"]) == (0, 1)
    assert view["next_due_in_seconds"] == pytest.approx(1800, abs=1)


def test_a_queue_of_only_leased_or_due_jobs_has_no_next_due(fake_redis):
    view = queue(fake_redis, due={"1": 0}, leased={"3": MINUTE})
    assert (view["queued"], view["due_later"], view["next_due_ms"], view["next_due_in_seconds"]) == (1, 0, None, None)


def limited_sender(client, name: str, limit: int, recipients: int, first_ms: int) -> None:
    client.sadd("senders", name)
    client.set(f"sender:{name}:daily_limit", limit)
    client.zadd(f"sender:{name}:recipients", {f"62812{i:08d}": first_ms + i for i in range(recipients)})


def test_a_sender_at_its_limit_says_when_the_oldest_recipient_leaves_the_window(fake_redis):
    first = now_ms() - 3 * 3_600_000  # counted three hours ago: a slot frees in 21 h
    limited_sender(fake_redis, "full", 50, 50, first)
    limited_sender(fake_redis, "free", 50, 12, first)
    fake_redis.sadd("senders", "unlimited")
    views = {v["name"]: v["daily_limit"] for v in breaker_views(fake_redis, "")}
    assert views["unlimited"] is None
    assert views["free"] == {
        "limit": 50,
        "used": 12,
        "at_limit": False,
        "next_slot_in_seconds": None,
        "next_slot_ms": None,
    }
    full = views["full"]
    assert (full["limit"], full["used"], full["at_limit"]) == (50, 50, True)
    assert full["next_slot_in_seconds"] == pytest.approx(21 * 3600, abs=2)
    assert full["next_slot_ms"] == pytest.approx(first + WINDOW_MS, abs=2_000)


def test_the_daily_limit_reads_as_used_or_as_the_next_slot():
    at = datetime.now().replace(hour=14, minute=5, second=0, microsecond=0) + timedelta(days=1)
    full = {
        "limit": 50,
        "used": 50,
        "at_limit": True,
        "next_slot_in_seconds": 1.0,
        "next_slot_ms": at.timestamp() * 1000,
    }
    assert daily_limit_text(full) == "at daily limit (50/50), next slot at 14:05"
    free = {**UNDER_LIMIT, "limit": 1000, "used": 12}
    assert daily_limit_text(free) == "daily limit: 12/1,000 used"
    assert daily_limit_text(None) == ""


def test_times_read_as_hh_mm_today_and_with_the_date_on_another_day():
    today = datetime.now().replace(hour=9, minute=7, second=30, microsecond=0)
    assert clock(int(today.timestamp() * 1000)) == "09:07"
    other = today + timedelta(days=3)
    assert clock(int(other.timestamp() * 1000)) == other.strftime("%Y-%m-%d 09:07")


@pytest.mark.parametrize(
    "seconds, text",
    [(0.4, "in 0 s"), (42, "in 42 s"), (60, "in 1 min"), (1199.6, "in 20 min"), (11_100, "in 3 h 05 min")],
)
def test_how_long_until_reads_in_seconds_minutes_or_hours(seconds, text):
    assert from_now(seconds) == text


def test_the_status_text_shows_due_later_per_partition_and_the_daily_limits():
    soon = int(time.time() * 1000) + 20 * MINUTE
    partitions = [
        {
            "partition": f"{k}/2",
            "pending": 5,
            "queued": 1,
            "in_flight": 0,
            "due_later": 3 * k,
            "next_due_ms": soon if k else None,
            "next_due_in_seconds": 1200.0 if k else None,
            "sent": 0,
            "failed": 0,
            "sent_last_minute": 0,
            "retries": 0,
            "reclaims": 0,
            "paused": False,
        }
        for k in (0, 1)
    ]
    total = {key: sum(p[key] for p in partitions) for key in ("pending", "queued", "in_flight", "due_later")}
    total |= {"sent": 0, "failed": 0, "sent_last_minute": 0, "retries": 0, "reclaims": 0}
    view = {
        "table": "campaign_master_1",
        "rows": 10,
        "done_percent": 0.0,
        "rate_per_second": 0.0,
        "eta_seconds": None,
        "done": False,
        "paused": False,
        "total": total,
        "partitions": partitions,
        "processes": [],
        "senders": [
            {"name": "waha:s1", "state": "closed", "reason": None, "daily_limit": None},
            {
                "name": "waha:s2",
                "state": "closed",
                "reason": None,
                "daily_limit": {**UNDER_LIMIT, "limit": 50, "used": 12},
            },
        ],
        "failure_reasons": [],
    }
    assert due_later_line(partitions[0]) is None
    console = Console(width=120, record=True)
    console.print(render(view))
    text = console.export_text()
    assert f"1/2: 3 due later (scheduled or retrying), the next at {clock(soon)} (in 20 min)" in text
    assert "0/2:" not in text
    assert "waha:s2: daily limit: 12/50 used" in text.splitlines()
    assert not any(line.startswith("waha:s1:") for line in text.splitlines())  # no daily limit
    header = next(line for line in text.splitlines() if "pending" in line)
    assert header.split() == ["partition", "pending", "due", "now", "sending", "later", "sent", "failed", "sent/min"]


@pytest.mark.parametrize(
    "pending, due_later, rate, last_due_in, eta",
    [
        (0, 0, 5.0, None, None),  # nothing pending
        (100, 0, 10.0, None, 10),  # all due now: at the rate
        (100, 0, 0.0, None, None),  # due now, nothing sent in the last minute: unknown
        (100, 40, 10.0, 3600, 3600),  # the last scheduled row is due in an hour
        (100, 40, 10.0, 2, 6),  # the rows due now take longer than the wait
        (40, 40, 0.0, 7200, 7200),  # only scheduled rows, none sent yet: not before the last is due
    ],
)
def test_the_eta_covers_the_rows_due_now_and_waits_for_the_last_one_due_later(
    pending, due_later, rate, last_due_in, eta
):
    now_ms = 1_800_000_000_000
    last = None if last_due_in is None else now_ms + last_due_in * 1000
    partitions = [{"last_due_ms": last}, {"last_due_ms": None if last is None else last - 5000}]
    assert eta_seconds({"pending": pending, "due_later": due_later}, partitions, rate, now_ms) == eta


def big_counts_view(count: int) -> dict:
    counts = {"pending": count, "queued": count, "in_flight": 500, "due_later": count}
    counts |= {"sent": count, "failed": count, "sent_last_minute": 123_456, "retries": 0, "reclaims": 0}
    partitions = [
        {**counts, "partition": f"{k}/2", "paused": k == 1, "next_due_ms": None, "next_due_in_seconds": None}
        for k in (0, 1)
    ]
    view = {
        "table": "campaign_master_1",
        "rows": 10_000_000,
        "done_percent": 49.4,
        "rate_per_second": 2000.0,
        "eta_seconds": 5000,
        "done": False,
        "paused": False,
        "total": {key: 2 * value for key, value in counts.items()},
        "partitions": partitions,
        "processes": [],
        "senders": [],
        "failure_reasons": [],
    }
    return view


def test_seven_digit_counts_are_shown_whole_on_an_80_column_terminal():
    console = Console(width=80, record=True)
    console.print(render(big_counts_view(1_234_567)))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in console.export_text()
    total = next(line for line in lines if line.split()[:1] == ["total"])
    doubled = "2,469,134"
    assert total.split() == ["total", doubled, doubled, "1,000", doubled, doubled, doubled, "246,912"]
    assert any(line.split() == ["(paused)"] for line in lines)  # the label wraps, the figures stay whole


def test_eight_digit_counts_fold_rather_than_lose_digits_on_an_80_column_terminal():
    console = Console(width=80, record=True)
    console.print(render(big_counts_view(12_345_678)))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert text.count("12,345,67") == 10  # each figure whole, or folded before its last digit
