"""Webhook load: how many signed receipts a second the web service takes, how
fast it answers, and whether every one it acknowledged reaches MySQL.

It starts the web service (`python -m common.web`, with a META_APP_SECRET
made for the run) against a throwaway database and an empty Redis
namespace, posts signed Meta status webhooks to /webhooks/meta at a target
rate from one asyncio loop (aiohttp), each event a distinct (message id,
status), and times every answer. Then it waits until delivery_receipts
holds every acknowledged event and prints what was sent, acknowledged and
stored. Exit 1 when an acknowledged event was lost (or the service broke),
0 otherwise; a rate below the target is reported, not an error.

    .venv/bin/python bench/webhooks.py                          # 5,000 events/s for 10 s, 1 per request
    .venv/bin/python bench/webhooks.py --events-per-request 10  # Meta batches statuses in one POST
"""

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# `python bench/webhooks.py` puts bench/ on sys.path, not the repository root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import click  # noqa: E402

from bench.children import Child  # noqa: E402
from bench.run import PROJECT_VARIABLES, resolve_url  # noqa: E402
from bench.services import BenchDatabase, RedisNamespace  # noqa: E402
from common.errors import CampaignError, ConfigError  # noqa: E402
from common.testing.dialects import Cloud  # noqa: E402

STARTUP_SECONDS = 30.0
REQUEST_TIMEOUT = 30.0  # seconds for one POST; a slower answer counts as an error


@dataclass
class Load:
    """What the load loop saw."""

    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # of acknowledged requests
    answers: dict[str, int] = field(default_factory=dict)  # status (or error name) -> requests
    acked_ids: list[str] = field(default_factory=list)
    first_sent: float = 0.0
    last_ack: float = 0.0
    late_starts: int = 0  # requests sent more than 100 ms after their planned time: the target was not held


def meta_body(ids: list[str], at: int) -> bytes:
    statuses = [{"id": i, "status": "delivered", "timestamp": str(at), "recipient_id": "6281234567890"} for i in ids]
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"}, "statuses": statuses}
    document = {"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [{"value": value}]}]}
    return json.dumps(document, separators=(",", ":")).encode()


def signed_requests(events: int, per_request: int, secret: str, run: str) -> list[tuple[list[str], bytes, dict]]:
    """Every request's ids, body and headers, made before the clock starts."""
    at = int(time.time())
    made = []
    for start in range(0, events, per_request):
        ids = [f"wamid.bench.{run}.{n}" for n in range(start, min(start + per_request, events))]
        body = meta_body(ids, at)
        made.append((ids, body, {"Content-Type": "application/json", **Cloud.sign(secret, body)}))
    return made


async def send_all(url: str, made: list, request_rate: float, concurrency: int) -> Load:
    """POST each request at its planned time (start + i / rate) with at most
    `concurrency` in flight; a request whose time has passed goes at once."""
    load = Load()
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        load.first_sent = start

        async def worker():
            nonlocal next_index
            while next_index < len(made):
                index = next_index
                next_index += 1
                planned = start + index / request_rate
                wait = planned - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.1:
                    load.late_starts += 1
                ids, body, headers = made[index]
                sent = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        status = answer.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    name = type(exc).__name__
                    load.answers[name] = load.answers.get(name, 0) + 1
                    continue
                answered = time.monotonic()
                load.answers[str(status)] = load.answers.get(str(status), 0) + 1
                if 200 <= status < 300:
                    load.latencies_ms.append((answered - sent) * 1000)
                    load.acked_ids += ids
                    load.last_ack = max(load.last_ack, answered)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.requests = len(made)
    return load


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_server(name: str, module: str, env: dict, log_dir: Path) -> tuple[Child, str]:
    """The web service or the webhook receiver on a free port, and its URL."""
    web = Child.python_module(name, module, ["--port", "0", "--host", "127.0.0.1"], env, log_dir)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://\S+)", web.log_path.read_text(errors="replace"))
        if match:
            return web, match.group(1)
        if web.exited():
            break
        time.sleep(0.05)
    tail = web.log_tail()
    web.stop(grace=5)
    raise ConfigError(f"{module} did not start: {tail}")


def stored_count(db: BenchDatabase) -> int:
    return db.execute("SELECT COUNT(*) FROM delivery_receipts")[0][0]


def wait_stored(db: BenchDatabase, acked: int, seconds: float) -> tuple[int, float]:
    """Until delivery_receipts holds `acked` events or `seconds` pass: (stored, when)."""
    deadline = time.monotonic() + seconds
    while True:
        stored = stored_count(db)
        if stored >= acked or time.monotonic() > deadline:
            return stored, time.monotonic()
        time.sleep(0.05)


def run(options: dict) -> int:
    database_url = resolve_url(options["database_url"], "DATABASE_URL")
    redis_url = resolve_url(options["redis_url"], "REDIS_URL")
    rate, seconds, per_request = options["rate"], options["seconds"], options["events_per_request"]
    events = options["events"] or int(rate * seconds)
    namespace = RedisNamespace(redis_url)
    db = BenchDatabase(database_url)
    work_dir = Path(tempfile.mkdtemp(prefix="campaign-webhooks-"))
    secret = secrets.token_hex(16)
    click.echo(
        f"webhooks: {events:,} events, {per_request} per request, target {rate:g} events/s, concurrency "
        f"{options['concurrency']}; database {db.target.database}, Redis {namespace.url.rsplit('/', 1)[-1]} "
        f"prefix {namespace.prefix}",
        err=True,
    )
    env = dict(
        {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES},
        DATABASE_URL=db.url,
        REDIS_URL=namespace.url,
        KEY_PREFIX=namespace.prefix,
        META_APP_SECRET=secret,
        PYTHONUNBUFFERED="1",
    )
    web: Child | None = None
    receiver: Child | None = None
    ok = False
    try:
        web, url = start_server("web", "common.web", env, work_dir)
        if options["receiver"]:
            receiver, url = start_server("webhooks", "common.webhooks", env, work_dir)
        made = signed_requests(events, per_request, secret, secrets.token_hex(3))
        client_cpu = resource.getrusage(resource.RUSAGE_SELF)
        load = asyncio.run(send_all(f"{url}/webhooks/meta", made, rate / per_request, options["concurrency"]))
        after = resource.getrusage(resource.RUSAGE_SELF)
        client_seconds = after.ru_utime + after.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime
        acked = len(load.acked_ids)
        stored, all_in = wait_stored(db, acked, options["store_wait"])
        stored_ids = {row[0] for row in db.execute("SELECT message_id FROM delivery_receipts")}
        lost = len(set(load.acked_ids) - stored_ids)
        usage = web.stop()
        web_exit = usage.exit_code
        received = receiver.stop() if receiver else None
        if received:
            web_exit = web_exit or received.exit_code
        took = max(load.last_ack - load.first_sent, 1e-9)
        lat = load.latencies_ms
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(load.answers.items()))
        behind = f"; {load.late_starts:,} requests left late (the target rate was not held)" if load.late_starts else ""
        click.echo(
            f"sent {events:,} events in {load.requests:,} requests ({per_request} per request) | answers {answers}\n"
            f"acknowledged {acked:,} events in {took:.2f} s: {acked / took:,.0f} events/s, "
            f"{len(lat) / took:,.0f} requests/s (target {rate:,.0f} events/s){behind}\n"
            f"ack latency ms: p50 {percentile(lat, 0.5):.1f} | p95 {percentile(lat, 0.95):.1f} | "
            f"p99 {percentile(lat, 0.99):.1f} | max {max(lat, default=float('nan')):.1f}\n"
            f"stored {stored:,} | lost {lost:,} (acknowledged, not stored) | all stored "
            + (
                f"{max(0.0, all_in - load.last_ack):.2f} s after the last ack"
                if stored >= acked
                else f"NOT within {options['store_wait']:g} s"
            )
            + f" | stored {stored / max(all_in - load.first_sent, 1e-9):,.0f} events/s overall\n"
            + (
                f"receiver: {received.cpu_seconds:.1f} s CPU ({received.cpu_seconds / took:.0%} of a core), "
                f"peak RSS {received.peak_rss_mb:.0f} MB, exit {received.exit_code} | "
                if received
                else ""
            )
            + f"web service: {usage.cpu_seconds:.1f} s CPU ({usage.cpu_seconds / took:.0%} of a core while sending), "
            f"peak RSS {usage.peak_rss_mb:.0f} MB, exit {usage.exit_code} | this client: {client_seconds:.1f} s CPU "
            f"({client_seconds / took:.0%} of a core; on a small machine it competes with the service)"
        )
        ok = lost == 0 and web_exit == 0 and acked > 0
        if not ok:
            click.echo(f"webhooks: FAILED; the logs are in {work_dir}", err=True)
        return 0 if ok else 1
    finally:
        for child in (receiver, web):
            if child is not None:
                child.stop(grace=5)
        db.drop()
        namespace.clear()
        if ok:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            click.echo(f"webhooks: logs kept in {work_dir}", err=True)


@click.command()
@click.option("--rate", type=click.FloatRange(min=1), default=5000.0, show_default=True, help="Target events/s.")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="How long to send.")
@click.option("--events", type=click.IntRange(min=0), default=0, help="Events in all (default: rate x seconds).")
@click.option(
    "--events-per-request",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Statuses in one webhook body (Meta batches them).",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=32, show_default=True, help="Requests in flight.")
@click.option(
    "--store-wait",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="After the last answer, wait at most this long for every acknowledged event to be stored.",
)
@click.option(
    "--receiver/--web-only",
    default=True,
    show_default=True,
    help="Post to the lean receiver (python -m common.webhooks) or to the web service's own routes.",
)
@click.option("--database-url", envvar="DATABASE_URL", show_envvar=True, help="Default: from .env.")
@click.option("--redis-url", envvar="REDIS_URL", show_envvar=True, help="Default: from .env.")
def main(**options):
    """Post signed Meta status webhooks to the web service at a target rate;
    report the rate it takes, its answer latency, and that every
    acknowledged event was stored. Exit 1 if any was lost."""
    try:
        sys.exit(run(options))
    except CampaignError as exc:
        click.echo(f"webhooks: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
