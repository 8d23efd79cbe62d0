"""`python -m common.status`: how far along the campaign is, how fast, what
failed and why, and which processes are alive, without reading logs.

MySQL says what is pending, sent and failed; Redis says what is queued, in
flight and waiting for a retry, the send rate (per-10 s buckets the
consumers count into), the processes' heartbeats, the senders' breakers and
the pause switches. `--watch` redraws until the campaign is done; `--json`
is the same data for scripts. `pause` and `resume` steer it; `resend
--failed` sends failed rows again.
"""

import json
import sys
import time
from datetime import UTC, datetime

import click
import redis
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from common.cli import SERVICE_OPTIONS
from common.errors import CampaignError
from common.queue import keys
from common.queue.heartbeat import live_processes
from common.queue.jobs import RATE_BUCKET, JobQueue, connect, now_ms, redis_failure
from common.queue.pause import set_paused
from common.settings import Partition, check_redis_url, identifier, parse_database_url
from common.store.campaign import FAILED, PENDING, SENT, CampaignTable

CHART_MINUTES = 60  # minutes of send history in the snapshot (the dashboard's chart)
RATE_BUCKETS = 6  # the current bucket and the five before it: about the last minute


def rate_window(sending_since_ms: int | None) -> float:
    """Seconds the rate buckets cover: five full ones and the current one so
    far, or less when sends began more recently than that."""
    window = (RATE_BUCKETS - 1) * RATE_BUCKET + time.time() % RATE_BUCKET
    if sending_since_ms is not None:
        window = min(window, max(time.time() - sending_since_ms / 1000, 1.0))
    return window


# A due set's jobs by what they wait for, on Redis's clock (the one leases
# and retries are set by), in one step so no job moves between the counts:
# {due now, waiting for a retry}. A job due later is either leased (claimed:
# its score is its lease end, and it is in the leased hash KEYS[2]) or put
# back to wait for a retry; a leased job whose lease lapsed is due now.
# Heartbeats cannot tell the two apart: they say how many jobs a consumer
# held up to five seconds ago.
DUE_COUNTS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local later = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) > now then later = later - 1 end
end
return {redis.call('ZCOUNT', KEYS[1], '-inf', now), later}
"""


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
    (ready, waiting_retry), sent_counts, paused, (retried, reclaimed), since = pipe.execute()
    in_flight = sum(
        int(p.get("in_flight", 0))
        for p in processes
        if p.get("role") == "consumer" and p.get("partition") == str(partition)
    )
    return {
        "partition": str(partition),
        "pending": table_counts.get(PENDING, 0),
        "queued": ready,
        "in_flight": in_flight,
        "waiting_retry": waiting_retry,
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


def breaker_views(client: redis.Redis, prefix: str) -> list[dict]:
    views = []
    for name in sorted(client.smembers(keys.senders(prefix))):
        state = client.hgetall(keys.breaker(prefix, name))
        view = {"name": name, "state": state.get("state", "closed"), "reason": state.get("reason")}
        if view["state"] == "open":
            view["opens_for_trial_in"] = max(int(state.get("until", 0)) - now_ms(), 0) / 1000
        views.append(view)
    return views


def snapshot(table: CampaignTable, client: redis.Redis, prefix: str, of: int) -> dict:
    """Everything `status` shows, as plain data (what --json prints)."""
    counts = table.counts_by_partition(of)
    try:
        processes = live_processes(client, prefix)
        partitions = [partition_view(counts[k], client, prefix, Partition(k, of), processes) for k in range(of)]
        paused = bool(client.exists(keys.paused(prefix)))
        senders = breaker_views(client, prefix)
        history = sent_per_minute(client, prefix, of)
    except redis.RedisError as exc:
        raise redis_failure("status", exc) from None
    total = {
        key: sum(p[key] for p in partitions)
        for key in (
            "pending",
            "queued",
            "in_flight",
            "waiting_retry",
            "sent",
            "failed",
            "sent_last_minute",
            "retries",
            "reclaims",
        )
    }
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
        "eta_seconds": round(total["pending"] / rate) if rate and total["pending"] else None,
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
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render(view: dict) -> Group:
    """The snapshot as rich renderables: a headline, a progress bar, and tables."""
    total = view["total"]
    state = "PAUSED" if view["paused"] else ("done" if view["done"] else "sending")
    headline = (
        f"[bold]{view['table']}[/]: {total['sent'] + total['failed']:,} of {view['rows']:,} rows done "
        f"({view['done_percent']:.1f} %), {view['rate_per_second']:,.1f} msg/s over the last minute, "
        f"ETA {duration(view['eta_seconds'])} - [bold]{state}[/]"
    )
    # In a grid row with its figure, so that the bar ends its line also when
    # the output is not a terminal (a bare ProgressBar then leaves it open).
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(view["rows"], 1), completed=total["sent"] + total["failed"], width=60),
        f"{view['done_percent']:.1f} %",
    )
    parts = Table(title="Partitions", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    parts.add_column("partition", no_wrap=True)
    for name in ("pending", "queued", "sending", "retry", "sent", "failed", "sent/min"):
        parts.add_column(name, justify="right", no_wrap=True)
    for p in view["partitions"] + [{**total, "partition": "total", "paused": view["paused"]}]:
        parts.add_row(
            p["partition"] + (" (paused)" if p["paused"] else ""),
            *(
                f"{p[k]:,}"
                for k in ("pending", "queued", "in_flight", "waiting_retry", "sent", "failed", "sent_last_minute")
            ),
        )
    procs = Table(
        "role",
        "partition",
        "host",
        "pid",
        "last beat",
        "in flight",
        "note",
        title="Live processes",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for p in view["processes"]:
        note = "paused" if p["paused"] else ("outside send window" if p["outside_window"] else "")
        procs.add_row(
            p["role"],
            p["partition"],
            p["host"],
            str(p["pid"]),
            f"{p['last_beat_seconds_ago']:.0f} s ago",
            str(p["in_flight"]) if p["role"] == "consumer" else "",
            note,
        )
    churn = (
        f"{total['retries']:,} retries, {total['reclaims']:,} jobs taken over from a lapsed lease "
        "(a consumer died or stalled)"
    )
    items: list[RenderableType] = [
        headline,
        bar,
        parts,
        churn,
        procs if view["processes"] else "[yellow]no live processes[/]",
    ]
    if view["senders"]:
        senders = Table(
            "sender", "breaker", "reason", title="Senders", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for s in view["senders"]:
            senders.add_row(s["name"], s["state"], s.get("reason") or "")
        items.append(senders)
    if view["failure_reasons"]:
        reasons = Table(
            "rows", "reason", title="Why rows failed", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for r in view["failure_reasons"]:
            reasons.add_row(f"{r['rows']:,}", r["reason"])
        items.append(reasons)
    return Group(*items)


class CampaignConnections:
    """The status command's connections, from the shared options."""

    def __init__(self, options: dict):
        target = parse_database_url(options["database_url"])
        self.table = CampaignTable(target, options["table"], options["phone_column"], options["status_column"])
        self.client = connect(check_redis_url(options["redis_url"]))
        self.prefix = options["key_prefix"]
        self.of = options["of"]

    def snapshot(self) -> dict:
        return snapshot(self.table, self.client, self.prefix, self.of)


def campaign_command(fn):
    for option in reversed(SERVICE_OPTIONS):
        fn = option(fn)
    return click.option(
        "--of",
        envvar="PARTITIONS",
        type=click.IntRange(min=1),
        default=2,
        show_envvar=True,
        show_default=True,
        help="Number of partitions (2: odd and even).",
    )(fn)


@click.group(invoke_without_command=True, context_settings={"max_content_width": 100})
@campaign_command
@click.option("--watch", is_flag=True, help="Redraw every --every seconds until the campaign is done.")
@click.option("--every", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object, for scripts.")
@click.pass_context
def main(context, watch, every, as_json, **options):
    """Show the campaign's progress: per partition and in total, pending rows,
    queued, in-flight and retrying jobs, sent, failed; the send rate over the
    last minute and an ETA; live processes, sender breakers, failure reasons.

    Subcommands: `pause` and `resume` (the whole campaign, or --partition K),
    `resend --failed` (send failed rows again)."""
    try:
        context.obj = options
        if context.invoked_subcommand:
            return
        campaign = CampaignConnections(options)
        if as_json:
            click.echo(json.dumps(campaign.snapshot()))
        elif watch:
            with Live(render(campaign.snapshot()), auto_refresh=False) as live:
                while True:
                    view = campaign.snapshot()
                    live.update(render(view), refresh=True)
                    if view["done"]:
                        break
                    time.sleep(every)
        else:
            Console().print(render(campaign.snapshot()))
    except CampaignError as exc:
        click.echo(f"status: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def steer(options: dict, partition: int | None, paused: bool) -> None:
    try:
        target = Partition(partition, options["of"]) if partition is not None else None
        client = connect(check_redis_url(options["redis_url"]))
        identifier(options["table"], "table name")
        set_paused(client, options["key_prefix"], target, paused)
    except CampaignError as exc:
        click.echo(f"status: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    what = f"partition {target}" if target else "the campaign"
    click.echo(
        f"{'paused' if paused else 'resumed'} {what}"
        + (": consumers claim nothing new within a second; producers keep queueing" if paused else "")
    )


PARTITION = click.option(
    "--partition", type=int, default=None, help="Only partition K (of --of, given before the subcommand); default: all."
)


@main.command()
@PARTITION
@click.pass_obj
def pause(options, partition):
    """Stop consumers claiming new jobs; sends in flight finish."""
    steer(options, partition, True)


@main.command()
@PARTITION
@click.pass_obj
def resume(options, partition):
    """Let consumers claim again where they left off."""
    steer(options, partition, False)


def resend_summary(count: int, reason: str | None, partition: Partition | None) -> str:
    """The one line `resend` prints: how many rows, which, and when they go."""
    which = [f"reason contains {reason!r}"] if reason else []
    which += [f"partition {partition}"] if partition else []
    return (
        f"set {count:,} failed row{'' if count == 1 else 's'} back to pending"
        + (f" ({', '.join(which)})" if which else "")
        + ("; producers queue them within FULL_SCAN_INTERVAL" if count else "")
    )


@main.command()
@click.option("--failed", is_flag=True, help="Required: failed rows are the ones this sets back to pending.")
@click.option("--reason", metavar="TEXT", default=None, help="Only rows whose failure reason contains TEXT.")
@PARTITION
@click.pass_obj
def resend(options, failed, reason, partition):
    """Send failed rows again: set them back to pending and forget why they
    failed. Each goes out with a new idempotency key (the row's send
    generation), so the endpoint does not drop it as a repeat; producers
    queue them on their next full read (within FULL_SCAN_INTERVAL)."""
    if not failed:
        raise click.UsageError(
            "say which rows to send again: --failed (optionally with --reason TEXT "
            "and --partition K); sent rows are never re-sent by this command"
        )
    try:
        target = Partition(partition, options["of"]) if partition is not None else None
        table = CampaignTable(
            parse_database_url(options["database_url"]),
            options["table"],
            options["phone_column"],
            options["status_column"],
        )
        try:
            count = table.resend_failed(reason, (target.index, target.of) if target else None)
        finally:
            table.close()
    except CampaignError as exc:
        click.echo(f"status: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(resend_summary(count, reason, target))
