"""The demo: seed rows, start the web service, the mock endpoint and the four
processes, show progress until every row is sent and its receipts are in,
print a summary, stop everything.

The mock hears back like the Cloud API: it posts signed delivered and read
receipts to the web service's /webhooks/meta (signed with a META_APP_SECRET
made for this run), which stores them in message_states; the progress line
and the summary count them from there.

It works on its own table (`campaign_demo`, like campaign_master_1) and Redis
key prefix (`demo:`), so it never touches a real campaign. Run it with
`scripts/demo`, which sets up the services first.
"""

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pymysql
import redis
import requests
from tqdm import tqdm

from common.errors import CampaignError, ConfigError
from common.settings import parse_database_url
from common.store.campaign import CampaignTable
from common.testing.services import connect_mysql

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".local" / "demo-logs"
ROLES = ["producers.odd", "producers.even", "consumers.odd", "consumers.even"]
TABLE = "campaign_demo"
PREFIX = "demo:"
RECEIPT_TABLES = ("delivery_receipts", "message_states")
NO_SUCH_TABLE = 1146


def connect(database_url: str):
    target = parse_database_url(database_url)
    try:
        return connect_mysql(target, target.database)
    except pymysql.MySQLError as exc:
        raise ConfigError(f"cannot connect to {target.describe()}: {exc.args[-1]} (run scripts/setup)") from None


# What a real list holds now and then; the consumers fail these rows, with the
# reason, and never send them.
BAD_PHONES = ["62812-CALL-ME", "62812"]


def demo_phone(n: int, bad_every: int) -> str:
    """Row n's phone: one bad one in each run of `bad_every` rows, on an odd
    or an even row in turn so that both partitions get some."""
    if bad_every:
        run = n // bad_every
        if n % bad_every == bad_every - 1 - run % 2:
            return BAD_PHONES[run % len(BAD_PHONES)]
    return f"62812{n:08d}"


def seed(connection, rows: int, bad_share: float) -> None:
    """A fresh demo table with `rows` pending rows, `bad_share` of them with a phone that is not valid."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(f"CREATE TABLE {TABLE} LIKE campaign_master_1")
        cursor.execute("DELETE FROM campaign_failures WHERE campaign_table = %s", (TABLE,))
        cursor.execute("DELETE FROM send_generations WHERE campaign_table = %s", (TABLE,))
        forget_receipts(cursor)
        bad_every = round(1 / bad_share) if bad_share > 0 else 0
        phones = [(demo_phone(n, bad_every),) for n in range(rows)]
        for start in range(0, rows, 5000):
            cursor.executemany(f"INSERT INTO {TABLE} (column1) VALUES (%s)", phones[start : start + 5000])


def forget_receipts(cursor) -> None:
    """Earlier demo runs' sends and receipts, so this run's counts are its own."""
    try:
        for table in RECEIPT_TABLES:
            cursor.execute(
                f"DELETE r FROM {table} r JOIN delivery_attempts a ON a.message_id = r.message_id"
                " WHERE a.campaign_table = %s",
                (TABLE,),
            )
            cursor.execute(f"DELETE FROM {table} WHERE campaign_table = %s", (TABLE,))
        cursor.execute("DELETE FROM delivery_attempts WHERE campaign_table = %s", (TABLE,))
    except pymysql.ProgrammingError as exc:
        if exc.args[0] != NO_SUCH_TABLE:  # a database from before receipts: the web service makes them
            raise


def receipt_counts(connection) -> dict[str, int]:
    """This run's messages by their furthest receipt (delivered includes read),
    and the receipts stored: message_states and delivery_receipts, tied to
    the demo's sends through the message ids the consumers recorded."""
    found = {"delivered": 0, "read": 0, "failed": 0, "receipts": 0}
    sends = "JOIN delivery_attempts a ON a.message_id = r.message_id AND a.outcome = 'sent' WHERE a.campaign_table = %s"
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT r.status, COUNT(*) FROM message_states r {sends} GROUP BY r.status", (TABLE,))
            states = dict(cursor.fetchall())
            cursor.execute(f"SELECT COUNT(*) FROM delivery_receipts r {sends}", (TABLE,))
            found["receipts"] = cursor.fetchone()[0]
    except pymysql.ProgrammingError as exc:
        if exc.args[0] != NO_SUCH_TABLE:
            raise
        return found
    found["delivered"] = states.get("delivered", 0) + states.get("read", 0)
    found["read"] = states.get("read", 0)
    found["failed"] = states.get("failed", 0)
    return found


def counts(connection) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT column3, COUNT(*) FROM {TABLE} GROUP BY column3")
        return dict(cursor.fetchall())


def clear_demo_keys(client: redis.Redis) -> None:
    keys = list(client.scan_iter(f"{PREFIX}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def start_mock(
    port: int, latency_ms: float, fail_rate: float, receipts_url: str | None, secret: str
) -> tuple[subprocess.Popen, str]:
    LOGS.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--latency-ms", str(latency_ms), "--fail-rate", str(fail_rate)]
    if receipts_url:
        args += ["--receipts-url", receipts_url]
    mock = subprocess.Popen(
        [sys.executable, "-m", "common.mock_whatsapp", *args],
        cwd=ROOT,
        env=dict(os.environ, MOCK_RECEIPTS_SECRET=secret),  # not in argv, where ps shows it
        stderr=subprocess.PIPE,
        text=True,
    )
    assert mock.stderr is not None
    line = mock.stderr.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        mock.kill()
        raise ConfigError(f"the mock endpoint did not start: {line.strip() or mock.stderr.read().strip()}")
    return mock, match.group(0)


def start_roles(env: dict) -> dict[str, subprocess.Popen]:
    processes = {}
    for module in ROLES:
        log = open(LOGS / f"{module.replace('.', '-')}.log", "w")
        processes[module] = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return processes


def start_web(env: dict, port: int) -> tuple[subprocess.Popen, str | None]:
    web = subprocess.Popen(
        [sys.executable, "-m", "common.web", "--port", str(port)],
        cwd=ROOT,
        env={k: v for k, v in env.items() if not k.startswith("WEB_")},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert web.stderr is not None
    for line in web.stderr:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=web.stderr.read, daemon=True).start()  # keep its pipe drained
            return web, match.group(1)
    web.wait()
    return web, None


def start_dashboard(env: dict, port: int) -> tuple[subprocess.Popen, str | None]:
    """The web service on loopback, for watching and steering the demo and
    taking the mock's receipts: on --web-port, or a free port when that one
    is taken; the demo goes on without it (and receipts) if it cannot start."""
    web, url = start_web(env, port)
    if url is None and port != 0:
        click.echo(f"demo: port {port} is taken (--web-port); the dashboard takes a free one", err=True)
        web, url = start_web(env, 0)
    if url is None:
        click.echo("demo: the dashboard did not start; going on without it and without receipts", err=True)
    return web, url


def wait_for_receipts(connection, mock_url: str, seconds: float, bar: tqdm) -> bool:
    """After the last send: until the mock has posted every receipt it owes and
    MySQL holds every one it posted, at most `seconds`. True when all are in."""
    deadline = time.monotonic() + seconds
    while True:
        stats = requests.get(f"{mock_url}/_mock/stats", timeout=5).json()
        found = receipt_counts(connection)
        bar.set_postfix(delivered=found["delivered"], read=found["read"], refresh=True)
        if stats["receipts_pending"] == 0 and found["receipts"] >= stats["receipts_posted"]:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)


def stop(processes: dict[str, subprocess.Popen]) -> dict[str, int]:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    return {name: process.wait(timeout=15) for name, process in processes.items()}


@click.command()
@click.option("--rows", default=5000, show_default=True, help="Demo rows to seed and send.")
@click.option("--port", default=0, help="Port for the mock endpoint (default: a free one).")
@click.option("--latency-ms", default=20.0, show_default=True, help="Mock endpoint latency per send.")
@click.option("--fail-rate", default=0.05, show_default=True, help="Share of sends the mock answers with 500.")
@click.option(
    "--bad-phones",
    default=0.002,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of rows seeded with a phone that is not valid: they fail with a reason, unsent.",
)
@click.option("--timeout", "time_limit", default=600.0, show_default=True, help="Give up after this many seconds.")
@click.option(
    "--web-port", default=8000, show_default=True, help="Port of the dashboard (127.0.0.1); a free one if taken."
)
@click.option(
    "--receipts-wait",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="After the last send, wait at most this long for the receipts still due.",
)
def main(rows, port, latency_ms, fail_rate, bad_phones, time_limit, web_port, receipts_wait):
    """Send a demo campaign through the four processes and the mock endpoint,
    with the dashboard on --web-port to watch, pause and resume it, and the
    mock's delivered and read receipts coming back to it."""
    try:
        sys.exit(run(rows, port, latency_ms, fail_rate, bad_phones, time_limit, web_port, receipts_wait))
    except CampaignError as exc:
        click.echo(f"demo: error: {exc}", err=True)
        sys.exit(exc.exit_code)


def run(rows, port, latency_ms, fail_rate, bad_phones, time_limit, web_port, receipts_wait) -> int:
    database_url = os.environ.get("DATABASE_URL") or ""
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not database_url:
        raise ConfigError("DATABASE_URL is not set (run scripts/demo, which sets up .env)")
    connection = connect(database_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    seed(connection, rows, bad_phones)
    clear_demo_keys(client)
    secret = secrets.token_hex(16)  # this run's META_APP_SECRET, shared by the web service and the mock
    env = dict(
        os.environ,
        CAMPAIGN_TABLE=TABLE,
        KEY_PREFIX=PREFIX,
        POLL_INTERVAL="1",
        RETRY_DELAY="0.5",
        PYTHONUNBUFFERED="1",
    )
    web, dashboard = start_dashboard(dict(env, META_APP_SECRET=secret), web_port)
    receipts_url = f"{dashboard}/webhooks/meta" if dashboard else None
    try:
        mock, mock_url = start_mock(port, latency_ms, fail_rate, receipts_url, secret)
    except ConfigError:
        stop({"web": web})
        raise
    env["WHATSAPP_URL"] = f"{mock_url}/test_camp"
    click.echo(
        f"demo: {rows} rows in table {TABLE}, mock endpoint at {mock_url} "
        f"({latency_ms:g} ms, {fail_rate:.0%} failures), logs in {LOGS.relative_to(ROOT)}/"
    )
    if dashboard:
        click.echo(
            f"demo: dashboard at {dashboard}/ ; receipts come back to {receipts_url} ; in another terminal: "
            f"scripts/status --table {TABLE} --key-prefix {PREFIX} --watch"
        )
    started = time.monotonic()
    processes = start_roles(env)
    receipts_in = True
    sending_done = None
    try:
        with tqdm(total=rows, unit="msg", desc="sent", dynamic_ncols=True) as bar:
            while True:
                state = counts(connection)
                done = state.get(0, 0) + state.get(2, 0)
                bar.update(done - bar.n)
                if dashboard:
                    found = receipt_counts(connection)
                    bar.set_postfix(delivered=found["delivered"], read=found["read"], refresh=False)
                if state.get(1, 0) == 0 and not any(client.zcard(f"{PREFIX}due:2:{k}") for k in (0, 1)):
                    sending_done = time.monotonic()
                    if dashboard:
                        receipts_in = wait_for_receipts(connection, mock_url, receipts_wait, bar)
                    break
                crashed = [name for name, p in processes.items() if p.poll() is not None]
                if crashed:
                    click.echo(f"demo: {', '.join(crashed)} exited early; see {LOGS.relative_to(ROOT)}/", err=True)
                    return 1
                if time.monotonic() - started > time_limit:
                    click.echo(f"demo: not done after {time_limit:g} s; stopping", err=True)
                    return 1
                time.sleep(0.25)
    finally:
        codes = stop(processes)
        stop({"web": web})
        stats = requests.get(f"{mock_url}/_mock/stats", timeout=5).json()
        mock.send_signal(signal.SIGTERM)
        mock.wait(timeout=10)
    elapsed = (sending_done or time.monotonic()) - started  # the sending; receipts may come later
    state = counts(connection)
    found = receipt_counts(connection)
    left = sum(1 for _ in client.scan_iter(f"{PREFIX}job:*", count=1000))
    click.echo(
        f"\nrows {rows} | sent {state.get(0, 0)} | failed {state.get(2, 0)} | pending {state.get(1, 0)} | "
        f"job keys left {left}\nmock: {stats['requests']} requests, {stats['delivered']} delivered, "
        f"{stats['unique']} unique, {stats['duplicates']} duplicates\n"
        f"{elapsed:.1f} s, {state.get(0, 0) / elapsed:.0f} msg/s | exit codes {codes}"
    )
    if dashboard:
        click.echo(
            f"receipts: delivered {found['delivered']} | read {found['read']} | failed after sending"
            f" {found['failed']} | posted {stats['receipts_posted']}, not posted {stats['receipts_failed']}"
            + ("" if receipts_in else f" | still coming after {receipts_wait:g} s")
        )
    ok = (
        state.get(1, 0) == 0
        and left == 0
        and stats["duplicates"] == 0
        and stats["unique"] == state.get(0, 0)
        and not any(codes.values())
    )
    demo_table = CampaignTable(parse_database_url(database_url), TABLE, "column1", "column3")
    for reason, count in demo_table.failure_reasons():
        click.echo(f"failed {count}: {reason}")
    click.echo("demo: every row sent exactly once" if ok else "demo: FAILED, see the logs")
    return 0 if ok else 1


if __name__ == "__main__":
    main()
