"""`python -m common.status`: how far along the campaign is, how fast, what
failed and why, and which processes are alive, without reading logs.

It draws the snapshot (common/ops/snapshot.py) as tables (common/ops/status_text.py); `--watch` redraws
until the campaign is done; `--json` is the same data for scripts. `pause`
and `resume` steer it; `resend --failed` sends failed rows again, `resend
--undelivered` the ones whose message failed after acceptance; `optout`
keeps the opt-out list.
"""

import csv
import json
import sys
import time

import click
from rich.console import Console
from rich.live import Live

from common.cli import PARTITIONS_OPTION, SERVICE_OPTIONS
from common.errors import CampaignError, ConfigError
from common.ops.snapshot import Throttled, after_sending, snapshot
from common.ops.status_text import render, resend_summary, undelivered_summary
from common.phones import InvalidPhone, check_region, mask_phone, normalise_phone
from common.queue.jobs import connect
from common.queue.pause import set_paused
from common.settings import Partition, check_redis_url, identifier, parse_database_url
from common.store.campaign import CampaignTable
from common.store.receipts import ReceiptStore


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
    return PARTITIONS_OPTION(fn)


@click.group(invoke_without_command=True, context_settings={"max_content_width": 100})
@campaign_command
@click.option("--watch", is_flag=True, help="Redraw every --every seconds until the campaign is done.")
@click.option("--every", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object, for scripts.")
@click.pass_context
def main(context, watch, every, as_json, **options):
    """Show the campaign's progress: per partition and in total, pending rows,
    jobs due now, in flight and due later (scheduled or retrying, and when the
    next is due), sent, failed; the send rate over the last minute and an ETA;
    live processes, sender breakers and daily limits, failure reasons; after
    sending: delivered, read, undelivered, opted out, send-to-delivered p50/p95.

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
