"""Prometheus metrics of one long-running process, served with
prometheus_client on --metrics-port. Runs from cron have no port to scrape:
their counters stay in Redis (stats and sent_at keys), which `status` reads."""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

SENDS = Counter(
    "campaign_sends",
    "Ended send attempts, by outcome (sent, retry, failed, sender_down).",
    ["partition", "provider", "sender", "outcome"],
)
SEND_SECONDS = Histogram(
    "campaign_send_seconds",
    "Time from request to answer of one send.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter("campaign_retries", "Jobs put back to be tried again later.", ["partition"])
LEASES_LOST = Counter(
    "campaign_leases_lost",
    "Claimed jobs whose lease this consumer lost (another may reclaim them, or Redis restarted).",
    ["partition"],
)
LEASES_RECLAIMED = Counter(
    "campaign_leases_reclaimed",
    "Jobs claimed after another consumer's lease on them lapsed (it died or stalled).",
    ["partition"],
)
QUEUED = Counter("campaign_jobs_queued", "Jobs a producer added to the queue.", ["partition"])
QUEUE_DEPTH = Gauge(
    "campaign_queue_depth", "Jobs in the partition's queue: due, leased or waiting to retry.", ["partition"]
)
BREAKER_OPEN = Gauge(
    "campaign_breaker_open", "1 while the sender's circuit breaker is open, as this process last saw it.", ["sender"]
)
RECEIPTS = Counter(
    "campaign_receipts",
    "Receipts from gateway webhooks: received (acknowledged), then stored by status (sent, delivered, read, failed).",
    ["gateway", "status"],
)
WEBHOOKS_REFUSED = Counter(
    "campaign_webhooks_refused",
    "Webhook requests refused for their signature: missing or wrong.",
    ["gateway", "reason"],
)
OPT_OUTS = Counter(
    "campaign_opt_outs", "Phones added to (out) or taken off (in) the opt-out list by replies.", ["change"]
)


def serve(port: int, host: str) -> None:
    """Serve /metrics on a daemon thread."""
    start_http_server(port, addr=host)


def watch_queue_depth(partition: str, depth) -> None:
    """Read the queue depth at scrape time; NaN while Redis does not answer."""

    def read() -> float:
        try:
            return float(depth())
        except Exception:  # a scrape must not fail because Redis is away
            return float("nan")

    QUEUE_DEPTH.labels(partition).set_function(read)


def watch_breaker(name: str, breaker) -> None:
    BREAKER_OPEN.labels(name).set_function(lambda: 1.0 if breaker.state == "open" else 0.0)
