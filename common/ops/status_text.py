"""The status snapshot as a terminal shows it (rich tables and lines), and
the one-line summaries of a re-send that the CLI and the web API print."""

from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from common.settings import Partition


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


PARTITION_COUNTS = ("pending", "queued", "in_flight", "due_later", "sent", "failed", "sent_last_minute")


def clock(unix_ms: int) -> str:
    """A moment in local time: HH:MM today, with its date on another day."""
    moment = datetime.fromtimestamp(unix_ms / 1000)
    return moment.strftime("%H:%M" if moment.date() == datetime.now().date() else "%Y-%m-%d %H:%M")


def hh_mm(unix_ms: int) -> str:
    """A moment within the next 24 hours, in local time: HH:MM says which."""
    return datetime.fromtimestamp(unix_ms / 1000).strftime("%H:%M")


def from_now(seconds: float) -> str:
    """How long until something: "in 40 s", "in 12 min", "in 3 h 05 min"."""
    if seconds < 60:
        return f"in {seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"in {minutes} min" if minutes < 60 else f"in {minutes // 60} h {minutes % 60:02d} min"


def due_later_line(p: dict) -> str | None:
    """A partition's jobs due later (scheduled or waiting for a retry) and when the next is due."""
    if p["next_due_ms"] is None:
        return None
    return (
        f"{p['partition']}: {p['due_later']:,} due later (scheduled or retrying), the next at "
        f"{clock(p['next_due_ms'])} ({from_now(p['next_due_in_seconds'])})"
    )


def daily_limit_text(limit: dict | None) -> str:
    """A sender's daily limit: how much is used, or, at the limit, when a slot frees."""
    if limit is None:
        return ""
    if limit["at_limit"]:
        return f"at daily limit ({limit['used']:,}/{limit['limit']:,}), next slot at {hh_mm(limit['next_slot_ms'])}"
    return f"daily limit: {limit['used']:,}/{limit['limit']:,} used"


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
    # One space between columns, and a count is never cut short: a narrow
    # terminal wraps the partition's "(paused)" first (seven-digit counts fit
    # 80 columns), then folds a count's last digits onto the next line.
    parts = Table(title="Partitions", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    parts.add_column("partition", min_width=len("total"))
    # later: due later, scheduled or waiting for a retry (the lines under the table say when)
    for name in ("pending", "due now", "sending", "later", "sent", "failed", "sent/min"):
        parts.add_column(name, justify="right", overflow="fold")
    for p in view["partitions"] + [{**total, "partition": "total", "paused": view["paused"]}]:
        parts.add_row(p["partition"] + (" (paused)" if p["paused"] else ""), *(f"{p[k]:,}" for k in PARTITION_COUNTS))
    due_later = [line for line in map(due_later_line, view["partitions"]) if line]
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
        *due_later,
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
        # Lines, not a column: beside a sender's name and reason, a column would be cut short at 80 characters.
        limited = [s for s in view["senders"] if s["daily_limit"]]
        items += [Text(f"{s['name']}: {daily_limit_text(s['daily_limit'])}") for s in limited]
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
