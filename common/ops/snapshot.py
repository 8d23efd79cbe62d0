"""The status snapshot: one dict of how far along the campaign is, read
from MySQL (pending, sent, failed; what receipts said after sending) and
Redis (due now, in flight, due later: scheduled or waiting for a retry, and
when the next is due; the send rate, heartbeats, breakers and daily limits,
pause switches). `status` renders it, the web service serves it
as /api/status and the dashboard draws it.
"""

import threading
import time
from datetime import UTC, datetime

import redis

from common.delivery.daily_limit import usage
from common.errors import ConfigError
from common.queue import keys
from common.queue.heartbeat import live_processes
from common.queue.jobs import RATE_BUCKET, JobQueue, now_ms, redis_failure
from common.settings import Partition
from common.store.campaign import FAILED, PENDING, SENT, CampaignTable
from common.store.receipts import FUNNEL_KEYS, LATENCY_SAMPLE, ReceiptStore, percentile

CHART_MINUTES = 60  # minutes of send history in the snapshot (the dashboard's chart)
RATE_BUCKETS = 6  # the current bucket and the five before it: about the last minute
# The partition counts the snapshot's "total" adds up.
TOTALLED = (
    "pending",
    "queued",
    "in_flight",
    "due_later",
    "sent",
    "failed",
    "sent_last_minute",
    "retries",
    "reclaims",
)


def rate_window(sending_since_ms: int | None) -> float:
    """Seconds the rate buckets cover: five full ones and the current one so
    far, or less when sends began more recently than that."""
    window = (RATE_BUCKETS - 1) * RATE_BUCKET + time.time() % RATE_BUCKET
    if sending_since_ms is not None:
        window = min(window, max(time.time() - sending_since_ms / 1000, 1.0))
    return window


# A due set's jobs by what they wait for, on Redis's clock (the one leases,
# retries and scheduled times are set by), in one step so no job moves
# between the counts. A job due later is either leased (claimed: its score is
# its lease end, and it is in the leased hash KEYS[2]), scheduled, or put back
# to wait for a retry; a leased job whose lease lapsed is due now. Heartbeats
# cannot tell these apart: they say how many jobs a consumer held up to five
# seconds ago. The cost is two ZCOUNTs plus one step per leased job (a
# consumer's batch, not the queue): 100,000 scheduled jobs cost no more than
# ten. The earliest job due later that is not leased is among the first
# (leased jobs + 1) due later, the latest among the last as many. Returns
# {Redis's now, due now, due later and not leased, the earliest of those (ms)
# or '', the latest of those (ms) or ''}.
DUE_COUNTS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local later = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local leased = redis.call('HKEYS', KEYS[2])
for _, id in ipairs(leased) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) > now then later = later - 1 end
end
local function first_not_leased(jobs)
  for i = 1, #jobs, 2 do
    if redis.call('HEXISTS', KEYS[2], jobs[i]) == 0 then return jobs[i + 1] end
  end
  return ''
end
local next_due, last_due = '', ''
if later > 0 then
  next_due = first_not_leased(
    redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, #leased + 1))
  last_due = first_not_leased(
    redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, #leased + 1))
end
return {now, redis.call('ZCOUNT', KEYS[1], '-inf', now), later, next_due, last_due}
"""


def due_view(counted: list) -> dict:
    """DUE_COUNTS' answer as the snapshot's fields: jobs due now (lapsed
    leases included), jobs due later that no consumer holds (scheduled or
    waiting for a retry), and when the earliest and the latest of those are
    due, as unix ms on Redis's clock (the earliest also as seconds from now)."""
    now, due_now, later, next_due, last_due = counted
    next_ms, last_ms = (int(float(ms)) if ms not in ("", b"", None) else None for ms in (next_due, last_due))
    return {
        "queued": int(due_now),
        "due_later": int(later),
        "next_due_ms": next_ms,
        "next_due_in_seconds": None if next_ms is None else round(max(next_ms - int(now), 0) / 1000, 1),
        "last_due_ms": last_ms,
    }


def partition_view(
    table_counts: dict, client: redis.Redis, prefix: str, partition: Partition, processes: list[dict]
) -> dict:
    queue = JobQueue(client, partition, prefix)
    current = int(time.time()) // RATE_BUCKET
    buckets = [f"{keys.sent_at_prefix(prefix, partition)}{b}" for b in range(current - RATE_BUCKETS + 1, current + 1)]
    pipe = client.pipeline(transaction=False)
    client.register_script(DUE_COUNTS)(keys=[queue.due_key, queue.leased_key], client=pipe)
    pipe.mget(buckets)
    pipe.exists(keys.paused(prefix, partition))
    pipe.hmget(queue.stats_key, ["retried", "reclaimed"])
    pipe.get(queue.sending_since_key)
    counted, sent_counts, paused, (retried, reclaimed), since = pipe.execute()
    due = due_view(counted)
    in_flight = sum(
        int(p.get("in_flight", 0))
        for p in processes
        if p.get("role") == "consumer" and p.get("partition") == str(partition)
    )
    return {
        "partition": str(partition),
        "pending": table_counts.get(PENDING, 0),
        "queued": due["queued"],
        "in_flight": in_flight,
        "due_later": due["due_later"],
        "next_due_ms": due["next_due_ms"],
        "next_due_in_seconds": due["next_due_in_seconds"],
        "last_due_ms": due["last_due_ms"],
        "sent": table_counts.get(SENT, 0),
        "failed": table_counts.get(FAILED, 0),
        "sent_last_minute": sum(int(c or 0) for c in sent_counts),
        # Counted in Redis by every consumer, cron runs included.
        "retries": int(retried or 0),
        "reclaims": int(reclaimed or 0),  # jobs taken over after their consumer's lease lapsed
        "paused": bool(paused),
        "sending_since_ms": int(since) if since else None,
    }


def sent_per_minute(client: redis.Redis, prefix: str, of: int, minutes: int = CHART_MINUTES) -> list[dict]:
    """Rows sent in each of the last `minutes` minutes, all partitions together, oldest first."""
    now = int(time.time()) // 60
    wanted = [str(m) for m in range(now - minutes + 1, now + 1)]
    pipe = client.pipeline(transaction=False)
    for k in range(of):
        pipe.hmget(keys.sent_per_minute(prefix, Partition(k, of)), wanted)
    totals = [sum(int(v or 0) for v in values) for values in zip(*pipe.execute())]
    return [{"minute": int(m) * 60, "sent": sent} for m, sent in zip(wanted, totals)]


def daily_limit_view(client: redis.Redis, prefix: str, name: str, redis_now_ms: float) -> dict | None:
    """A sender's daily limit as the snapshot shows it, or None when its
    consumers run without one: recipients counted in the last 24 h, the
    limit, and, at the limit, when the oldest recipient leaves the window."""
    used = usage(client, keys.recipients(prefix, name), keys.daily_limit(prefix, name), redis_now_ms)
    if used is None:
        return None
    full = used["used"] >= used["limit"]
    return {
        "limit": used["limit"],
        "used": used["used"],
        "at_limit": full,
        "next_slot_in_seconds": round(used["next_slot_in"], 1) if full else None,
        "next_slot_ms": now_ms() + int(used["next_slot_in"] * 1000) if full else None,
    }


def breaker_views(client: redis.Redis, prefix: str) -> list[dict]:
    """Each sender that registered itself: its breaker and its daily limit."""
    views = []
    seconds, micros = client.time()  # breakers and daily limits are on Redis's clock, not this host's
    redis_now_ms = seconds * 1000 + micros // 1000
    for name in sorted(client.smembers(keys.senders(prefix))):
        state = client.hgetall(keys.breaker(prefix, name))
        view = {"name": name, "state": state.get("state", "closed"), "reason": state.get("reason")}
        if view["state"] == "open":
            view["opens_for_trial_in"] = max(int(state.get("until", 0)) - redis_now_ms, 0) / 1000
        view["daily_limit"] = daily_limit_view(client, prefix, name, redis_now_ms)
        views.append(view)
    return views


def after_sending(table: CampaignTable, of: int) -> dict | None:
    """What the gateways' webhooks said about the rows sent: per partition and
    in total, messages delivered (read ones included), read, failed after the
    gateway accepted them, rows failed because their phone opted out, and the
    seconds from send to delivered (p50, p95) over the latest LATENCY_SAMPLE
    delivered messages. None on a database without the receipt tables."""
    store = ReceiptStore(table)
    try:
        counts = store.funnel_counts(of)
        seconds = store.delivery_seconds(of)
    except ConfigError:
        return None  # no message_states yet: the web service creates it when it starts

    def view(name: str, counts: dict, samples: list[float]) -> dict:
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        return {
            "partition": name,
            **counts,
            "delivery_p50_seconds": None if p50 is None else round(p50, 3),
            "delivery_p95_seconds": None if p95 is None else round(p95, 3),
            "delivery_samples": len(samples),
        }

    everything = sorted(s for k in range(of) for s in seconds[k])
    return {
        "partitions": [view(str(Partition(k, of)), counts[k], seconds[k]) for k in range(of)],
        "total": view("total", {key: sum(c[key] for c in counts.values()) for key in FUNNEL_KEYS}, everything),
        "sample_limit": LATENCY_SAMPLE,
    }


def with_sent(funnel: dict | None, partitions: list[dict], total: dict) -> dict | None:
    """The after-sending view headed by the rows sent now (it may be older: see Throttled)."""
    if funnel is None:
        return None
    return {
        **funnel,
        "partitions": [{**f, "sent": p["sent"]} for f, p in zip(funnel["partitions"], partitions)],
        "total": {**funnel["total"], "sent": total["sent"]},
    }


def eta_seconds(total: dict, partitions: list[dict], rate: float, now_ms: float) -> int | None:
    """Seconds until every pending row is done, as far as can be told: the
    rows due now at the current rate, and not before the last job scheduled
    (or retrying) later is due. None when nothing is pending, or when rows are
    due now and nothing was sent in the last minute."""
    if not total["pending"]:
        return None
    due_now = max(total["pending"] - total["due_later"], 0)
    if due_now and not rate:
        return None
    sending = due_now / rate if due_now else 0.0
    last = max((p["last_due_ms"] for p in partitions if p["last_due_ms"] is not None), default=None)
    waiting = max(last - now_ms, 0) / 1000 if last is not None else 0.0
    return round(max(sending, waiting))


def snapshot(table: CampaignTable, client: redis.Redis, prefix: str, of: int, funnel=None) -> dict:
    """Everything `status` shows, as plain data (what --json prints). `funnel()`
    gives the after-sending view (default: after_sending, computed now)."""
    counts = table.counts_by_partition(of)
    try:
        processes = live_processes(client, prefix)
        partitions = [partition_view(counts[k], client, prefix, Partition(k, of), processes) for k in range(of)]
        paused = bool(client.exists(keys.paused(prefix)))
        senders = breaker_views(client, prefix)
        history = sent_per_minute(client, prefix, of)
    except redis.RedisError as exc:
        raise redis_failure("status", exc) from None
    total = {key: sum(p[key] for p in partitions) for key in TOTALLED}
    rows = total["pending"] + total["sent"] + total["failed"]
    started = [p["sending_since_ms"] for p in partitions if p["sending_since_ms"]]
    rate = total["sent_last_minute"] / rate_window(min(started) if started else None)
    now = time.time()
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "table": table.table,
        "rows": rows,
        "done_percent": round(100 * (total["sent"] + total["failed"]) / rows, 1) if rows else 100.0,
        "rate_per_second": round(rate, 1),
        "eta_seconds": eta_seconds(total, partitions, rate, now * 1000),
        "done": total["pending"] == 0 and total["in_flight"] == 0,
        "paused": paused,
        "total": total,
        "partitions": partitions,
        "processes": [
            {
                "role": p.get("role"),
                "partition": p.get("partition"),
                "host": p.get("host"),
                "pid": int(p.get("pid", 0)),
                "last_beat_seconds_ago": round(now - float(p.get("beat", now)), 1),
                "in_flight": int(p.get("in_flight", 0)),
                "paused": p.get("paused") == "1",
                "outside_window": p.get("outside_window") == "1",
            }
            for p in processes
        ],
        "senders": senders,
        "failure_reasons": [{"reason": reason, "rows": rows} for reason, rows in table.failure_reasons()],
        "recent_failures": table.recent_failures(),
        "sent_per_minute": history,
        "after_sending": with_sent((funnel or (lambda: after_sending(table, of)))(), partitions, total),
    }


class Throttled:
    """A value recomputed at most every `min_age` seconds, or every
    `cost_factor` times as long as computing it last took, which keeps the
    work to a tenth of one core however big the table: `status --watch`
    redraws every 2 s while a big campaign's receipt counts take about a
    second, and the web service's clients share one status snapshot (a
    count takes about 0.3 s per million rows). One computation at a time;
    callers meanwhile wait for it and share it. `clear()` makes the next
    call compute afresh, so a change the caller made shows."""

    def __init__(self, compute, min_age: float = 0.0, cost_factor: float = 10.0):
        self.compute = compute
        self.min_age = min_age
        self.cost_factor = cost_factor
        self.lock = threading.Lock()
        self.value = None
        self.expires = 0.0

    def __call__(self):
        with self.lock:
            if self.value is None or time.monotonic() >= self.expires:
                started = time.monotonic()
                self.value = self.compute()
                took = time.monotonic() - started
                self.expires = time.monotonic() + max(self.min_age, self.cost_factor * took)
            return self.value

    def clear(self) -> None:
        with self.lock:
            self.value = None
