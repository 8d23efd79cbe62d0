"""`python -m common.status`: how far along the campaign is, how fast, what
failed and why, and which processes are alive, without reading logs.

MySQL says what is pending, sent and failed; Redis says what is queued, in
flight and waiting for a retry, the send rate (per-10 s buckets the
consumers count into), the processes' heartbeats, the senders' breakers and
the pause switches. `--watch` redraws until the campaign is done; `--json`
is the same data for scripts. MySQL also holds what the gateways' receipts
said after sending (the "After sending" table). `pause` and `resume` steer
it; `resend --failed` sends failed rows again, `resend --undelivered` the
ones whose message failed after acceptance; `optout` keeps the opt-out list.
"""

import csv
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
from common.errors import CampaignError, ConfigError
from common.phones import InvalidPhone, check_region, mask_phone, normalise_phone
from common.queue import keys
from common.queue.heartbeat import live_processes
from common.queue.jobs import RATE_BUCKET, JobQueue, connect, now_ms, redis_failure
from common.queue.pause import set_paused
from common.settings import Partition, check_redis_url, identifier, parse_database_url
from common.store.campaign import FAILED, PENDING, SENT, CampaignTable
from common.store.receipts import FUNNEL_KEYS, LATENCY_SAMPLE, ReceiptStore, percentile

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
        "after_sending": with_sent((funnel or (lambda: after_sending(table, of)))(), partitions, total),
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
    if view.get("after_sending"):
        items.append(funnel_table(view["after_sending"]))
    if view["failure_reasons"]:
        reasons = Table(
            "rows", "reason", title="Why rows failed", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for r in view["failure_reasons"]:
            reasons.add_row(f"{r['rows']:,}", r["reason"])
        items.append(reasons)
    return Group(*items)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def funnel_table(funnel: dict) -> Table:
    """The "After sending" table: what receipts said about the rows sent."""
    table = Table(
        title="After sending (gateway receipts; undelivered: failed after acceptance; p50/p95: seconds from send"
        f" to delivered, latest {funnel['sample_limit']:,} delivered)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,  # eight columns of millions in 80 characters
    )
    table.add_column("partition", no_wrap=True)
    # undelivered: failed after the gateway accepted it; p50/p95: seconds from send to delivered
    for name in ("sent", "delivered", "read", "undelivered", "opted out", "p50", "p95"):
        table.add_column(name, justify="right", no_wrap=True)
    for p in funnel["partitions"] + [funnel["total"]]:
        table.add_row(
            p["partition"],
            *(f"{p[k]:,}" for k in ("sent", "delivered", "read", "failed_after_acceptance", "opted_out")),
            seconds(p["delivery_p50_seconds"]),
            seconds(p["delivery_p95_seconds"]),
        )
    return table


class Throttled:
    """A value recomputed at most every `min_age` seconds, or every
    `cost_factor` times as long as computing it last took: `--watch` redraws
    every 2 s, the receipt counts of a big campaign take about a second."""

    def __init__(self, compute, min_age: float = 0.0, cost_factor: float = 10.0):
        self.compute = compute
        self.min_age = min_age
        self.cost_factor = cost_factor
        self.value = None
        self.expires = 0.0

    def __call__(self):
        if time.monotonic() >= self.expires:
            started = time.monotonic()
            self.value = self.compute()
            took = time.monotonic() - started
            self.expires = time.monotonic() + max(self.min_age, self.cost_factor * took)
        return self.value


class CampaignConnections:
    """The status command's connections, from the shared options."""

    def __init__(self, options: dict):
        target = parse_database_url(options["database_url"])
        self.table = CampaignTable(target, options["table"], options["phone_column"], options["status_column"])
        self.client = connect(check_redis_url(options["redis_url"]))
        self.prefix = options["key_prefix"]
        self.of = options["of"]
        self.funnel = Throttled(lambda: after_sending(self.table, self.of))

    def snapshot(self) -> dict:
        return snapshot(self.table, self.client, self.prefix, self.of, self.funnel)


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
    last minute and an ETA; live processes, sender breakers, failure reasons;
    after sending: delivered, read, undelivered, opted out, send-to-delivered p50/p95.

    Subcommands: `pause` and `resume` (the whole campaign, or --partition K),
    `resend --failed` / `--undelivered` (send failed rows, or rows whose
    message failed after acceptance, again), `optout add|remove|list|import`."""
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


def undelivered_summary(count: int, partition: Partition | None) -> str:
    return (
        f"set {count:,} sent row{'' if count == 1 else 's'} whose message failed after acceptance back to pending"
        + (f" (partition {partition})" if partition else "")
        + ("; producers queue them within FULL_SCAN_INTERVAL" if count else "")
    )


def open_table(options: dict) -> CampaignTable:
    return CampaignTable(
        parse_database_url(options["database_url"]), options["table"], options["phone_column"], options["status_column"]
    )


def fail(exc: CampaignError) -> None:
    click.echo(f"status: error: {exc}", err=True)
    sys.exit(exc.exit_code)


@main.command()
@click.option("--failed", is_flag=True, help="Set failed rows (column3 = 2) back to pending.")
@click.option(
    "--undelivered",
    is_flag=True,
    help="Set back to pending the sent rows whose message failed after the gateway accepted it (a failed receipt).",
)
@click.option(
    "--reason", metavar="TEXT", default=None, help="With --failed: only rows whose failure reason contains TEXT."
)
@PARTITION
@click.pass_obj
def resend(options, failed, undelivered, reason, partition):
    """Send failed rows again: set them back to pending (--failed also forgets
    why they failed). Each goes out with a new idempotency key (the row's send
    generation), so the endpoint does not drop it as a repeat; producers
    queue them on their next full read (within FULL_SCAN_INTERVAL)."""
    if not failed and not undelivered:
        raise click.UsageError(
            "say which rows to send again: --failed (optionally with --reason TEXT and --partition K), "
            "--undelivered (rows whose message failed after acceptance), or both; "
            "rows delivered or still in flight are never re-sent by this command"
        )
    if reason and not failed:
        raise click.UsageError("--reason chooses among failed rows: give it with --failed")
    lines = []
    try:
        target = Partition(partition, options["of"]) if partition is not None else None
        table = open_table(options)
        try:
            if failed:
                lines.append(
                    resend_summary(
                        table.resend_failed(reason, (target.index, target.of) if target else None), reason, target
                    )
                )
            if undelivered:
                count = ReceiptStore(table).resend_undelivered((target.index, target.of) if target else None)
                lines.append(undelivered_summary(count, target))
        finally:
            table.close()
    except CampaignError as exc:
        fail(exc)
    for line in lines:
        click.echo(line)


# The opt-out list

REGION = click.option(
    "--default-region",
    envvar="DEFAULT_REGION",
    default=None,
    show_envvar=True,
    help="Country (ISO code, e.g. ID) of national numbers such as 0812...; numbers with a country code need none.",
)
IMPORT_CHUNK = 1000  # phones per INSERT


def region_of(default_region: str | None) -> str | None:
    try:
        return check_region(default_region)
    except ValueError as exc:
        fail(ConfigError(f"DEFAULT_REGION: {exc}"))
        return None  # not reached


def phones_given(phones: tuple[str, ...], region: str | None) -> list[str]:
    """Every phone normalised, or one error line and exit 2 before anything changes."""
    normalised = []
    for number, raw in enumerate(phones, 1):
        try:
            normalised.append(normalise_phone(raw, region))
        except InvalidPhone as exc:
            which = f"phone {number} of {len(phones)}" if len(phones) > 1 else "the phone"
            fail(ConfigError(f"{which} is not a number to message: {exc}; nothing changed"))
    return normalised


def with_store(options: dict, work):
    """Run work(store) on the campaign's database; an outage is one line and exit 3."""
    try:
        table = open_table(options)
        try:
            return work(ReceiptStore(table))
        finally:
            table.close()
    except CampaignError as exc:
        fail(exc)


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


@main.group()
def optout():
    """The opt-out list: phones consumers never message (their rows fail
    "opted out", unsent). Replies such as STOP add to it through the
    webhooks; these commands change it by hand."""


@optout.command("add")
@click.argument("phones", nargs=-1, required=True)
@click.option("--reason", default="added by hand", show_default=True, help="Why, kept with each phone.")
@REGION
@click.pass_obj
def optout_add(options, phones, reason, default_region):
    """Add PHONES to the list (a phone already there keeps its first reason)."""
    normalised = phones_given(phones, region_of(default_region))
    added = with_store(options, lambda store: store.opt_out(normalised, reason, "status"))
    unique = len(set(normalised))
    click.echo(
        f"added {plural(added, 'phone')} to the opt-out list"
        + (f", {unique - added:,} already there" if unique - added else "")
    )


@optout.command("remove")
@click.argument("phones", nargs=-1, required=True)
@REGION
@click.pass_obj
def optout_remove(options, phones, default_region):
    """Take PHONES off the list: consumers message them again."""
    normalised = phones_given(phones, region_of(default_region))
    removed = with_store(options, lambda store: store.opt_in(normalised))
    unique = len(set(normalised))
    click.echo(
        f"removed {plural(removed, 'phone')} from the opt-out list"
        + (f", {unique - removed:,} not on it" if unique - removed else "")
    )


@optout.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="The latest this many.")
@click.option(
    "--show-phones",
    is_flag=True,
    envvar="SHOW_PHONES",
    show_envvar=True,
    help="Phones in full instead of masked (62******89).",
)
@click.pass_obj
def optout_list(options, limit, show_phones):
    """The latest phones on the list: phone, source, when, reason."""
    entries, total = with_store(options, lambda store: (store.opt_outs(limit), store.opt_out_count()))
    click.echo(
        f"{plural(total, 'phone')} on the opt-out list"
        + (f", the latest {len(entries):,}:" if total > len(entries) else (":" if total else ""))
    )
    if entries:
        click.echo(f"{'phone':<16} {'source':<7} {'since':<19} reason")
    for e in entries:
        phone = e["phone"] if show_phones else mask_phone(e["phone"])
        click.echo(f"{phone:<16} {e['source']:<7} {e['created_at'].replace('T', ' '):<19} {e['reason']}")


@optout.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--reason", default="imported", show_default=True, help="Why, kept with each phone.")
@REGION
@click.pass_obj
def optout_import(options, file, reason, default_region):
    """Add the phones in FILE (- for stdin): one a line, or a CSV whose first
    column is the phone; blank lines and lines starting with # are skipped.
    Valid phones are added even when some lines are not; each of those is
    reported with its line number."""
    region = region_of(default_region)
    phones: list[str] = []
    invalid: list[tuple[int, str]] = []
    with click.open_file(file, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            first = next(csv.reader([text]), [""])
            try:
                phones.append(normalise_phone(first[0].strip() if first else "", region))
            except InvalidPhone as exc:
                invalid.append((number, str(exc)))
    unique = sorted(set(phones))

    def add(store: ReceiptStore) -> int:
        return sum(
            store.opt_out(unique[i : i + IMPORT_CHUNK], reason, "import") for i in range(0, len(unique), IMPORT_CHUNK)
        )

    added = with_store(options, add) if unique else 0
    click.echo(
        f"added {plural(added, 'phone')}, {len(unique) - added:,} already there"
        + (f", {len(phones) - len(unique):,} repeated in the file" if len(phones) > len(unique) else "")
        + f", {len(invalid):,} invalid"
    )
    for number, problem in invalid:
        click.echo(f"line {number}: {problem}")
