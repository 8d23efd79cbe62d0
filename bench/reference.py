"""The reference: the least a pipeline must do to send these rows, and nothing more.

One process per partition, the same work as our producer and consumer
together, on the same HTTP engine: read a page of pending rows (keyset
pagination, as our producer), SET NX each row's job key in one pipeline, POST
each message, then in batches UPDATE the sent rows to column3 = 0 and DEL
their keys (MySQL first, as our consumer). No history, no leases, no checks,
no breaker, pacing or pause. Our ratio to it is what our extras cost.

With `aiohttp` everything runs on one uvloop loop: CONCURRENCY coroutines
send, and the MySQL and Redis calls go to one thread so the loop keeps
sending meanwhile (one hand-off per page or batch, not per message). With
`requests` or `urllib3`, CONCURRENCY threads send and the main thread does
the rest.

Run by bench/run.py as `python -m bench.reference --partition K --of N ...`
until SIGTERM; it then writes the POST times (ms, one per line) to --latencies.
"""

import asyncio
import json
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import click
import redis
import requests
import urllib3
import uvloop
from requests.adapters import HTTPAdapter

from common.delivery.engines import tune_interpreter_for
from common.settings import parse_database_url
from common.store.campaign import open_connection

TABLE = "campaign_master_1"
PENDING, SENT = 1, 0
RECORD_EVERY = 0.1  # seconds between bookkeeping writes, as our consumer's
TICK = 0.01  # seconds between two looks of the async driver at its queue and its ended sends
IDLE_SLEEP = 0.05  # seconds to wait when no new row was found
TIMEOUT = 10.0  # seconds per request
HEADERS = {"Content-Type": "application/json"}


def body(phone: str) -> bytes:
    """Our webhook provider's body, as compact JSON."""
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": phone,
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        },
        separators=(",", ":"),
    ).encode()


def idempotency_key(row_id: int) -> dict:
    return {"Idempotency-Key": f"{TABLE}:{row_id}"}


class Rows:
    """One partition's pending rows in MySQL and their job keys in Redis."""

    def __init__(self, database_url: str, redis_url: str, key_prefix: str, partition: int, of: int, batch_size: int):
        target = parse_database_url(database_url)
        self.connection = open_connection(target, target.database, autocommit=True)
        self.redis = redis.Redis.from_url(redis_url)
        self.key_prefix = key_prefix
        self.partition, self.of, self.batch_size = partition, of, batch_size
        self.after = 0

    def key(self, row_id: int) -> str:
        return f"{self.key_prefix}job:{row_id}"

    def claim(self) -> list[tuple[int, str]]:
        """The next page of pending rows whose job key this call set. After the
        last page the walk starts over, for rows whose send failed; rows still
        in flight are then refused by SET NX."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, column1 FROM {TABLE} WHERE column3 = %s AND id > %s AND id %% %s = %s"
                f" ORDER BY id LIMIT %s",
                (PENDING, self.after, self.of, self.partition, self.batch_size),
            )
            rows = cursor.fetchall()
        if not rows:
            self.after = 0
            return []
        self.after = rows[-1][0]
        pipe = self.redis.pipeline(transaction=False)
        for row_id, phone in rows:
            pipe.set(self.key(row_id), phone, nx=True)
        return [row for row, taken in zip(rows, pipe.execute()) if taken]

    def finish(self, ended: list[tuple[int, bool]]) -> None:
        """Mark the sent rows, then delete every ended row's key (an unsent row
        stays pending and is read again)."""
        sent = [row_id for row_id, ok in ended if ok]
        if sent:
            with self.connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {TABLE} SET column3 = %s WHERE id IN ({', '.join(['%s'] * len(sent))})", (SENT, *sent)
                )
        if ended:
            self.redis.delete(*(self.key(row_id) for row_id, _ in ended))


class Stop:
    def __init__(self):
        self.requested = False

    def request(self, *_args) -> None:
        self.requested = True


def requests_poster(url: str, concurrency: int):
    session = requests.Session()
    session.trust_env = False  # our engine reads proxies once too
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0))
    session.headers.update(HEADERS)

    def post(row: tuple[int, str]) -> bool:
        try:
            response = session.post(url, data=body(row[1]), headers=idempotency_key(row[0]), timeout=TIMEOUT)
        except requests.RequestException:
            return False
        return 200 <= response.status_code < 300

    return post


def urllib3_poster(url: str, concurrency: int):
    pool = urllib3.connection_from_url(url, maxsize=concurrency, block=True)
    path = urlsplit(url).path

    def post(row: tuple[int, str]) -> bool:
        try:
            response = pool.urlopen(
                "POST",
                path,
                body=body(row[1]),
                headers={**HEADERS, **idempotency_key(row[0])},
                retries=False,
                redirect=False,
                timeout=TIMEOUT,
            )
        except urllib3.exceptions.HTTPError:
            return False
        return 200 <= response.status < 300

    return post


def timed(post, post_ms: list[float]):
    def send(row: tuple[int, str]) -> bool:
        started = time.perf_counter()
        ok = post(row)
        post_ms.append((time.perf_counter() - started) * 1000)
        return ok

    return send


def unstarted(todo: queue.SimpleQueue) -> list[tuple[int, bool]]:
    """Rows no thread has taken, as unsent: their keys are deleted, the rows stay pending."""
    rows = []
    try:
        while True:
            rows.append((todo.get_nowait()[0], False))
    except queue.Empty:
        return rows


def run_threads(rows: Rows, post, concurrency: int, stop: Stop) -> None:
    """CONCURRENCY threads send; this thread claims, collects and records."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        while (row := todo.get()) is not None:
            done.put((row[0], post(row)))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    in_hand, ended, last_record = 0, [], time.monotonic()  # in hand: claimed and not yet ended
    while not stop.requested or in_hand:
        if not stop.requested and in_hand < 2 * concurrency:
            claimed = rows.claim()
            for row in claimed:
                todo.put(row)
            in_hand += len(claimed)
        collected = []
        if stop.requested:
            collected += unstarted(todo)
        try:
            collected.append(done.get(timeout=0.05 if in_hand else IDLE_SLEEP))
            while True:
                collected.append(done.get_nowait())
        except queue.Empty:
            pass
        in_hand -= len(collected)
        ended += collected
        if ended and (not in_hand or time.monotonic() - last_record >= RECORD_EVERY):
            rows.finish(ended)
            ended, last_record = [], time.monotonic()
    rows.finish(ended)
    for _ in threads:
        todo.put(None)


async def run_async(rows: Rows, url: str, concurrency: int, stop: Stop, post_ms: list[float]) -> None:
    """CONCURRENCY coroutines send on this loop; MySQL and Redis calls run on one thread beside it."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.request)
    store = ThreadPoolExecutor(1)
    todo: asyncio.Queue = asyncio.Queue()
    ended: list[tuple[int, bool]] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                row = await todo.get()
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body(row[1]), headers=idempotency_key(row[0])) as response:
                        await response.read()
                        ok = 200 <= response.status < 300
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                post_ms.append((time.perf_counter() - started) * 1000)
                ended.append((row[0], ok))

        workers = [loop.create_task(worker()) for _ in range(concurrency)]
        in_hand, last_record = 0, loop.time()  # in hand: claimed and not yet recorded
        while not stop.requested or in_hand:
            found = False
            if not stop.requested and in_hand - len(ended) < 2 * concurrency:
                claimed = await loop.run_in_executor(store, rows.claim)
                for row in claimed:
                    todo.put_nowait(row)
                in_hand += len(claimed)
                found = bool(claimed)
            if ended and (not in_hand - len(ended) or loop.time() - last_record >= RECORD_EVERY):
                batch, ended[:] = list(ended), []
                await loop.run_in_executor(store, rows.finish, batch)
                in_hand -= len(batch)
                last_record = loop.time()
            if stop.requested:
                # Unstarted rows go back: their keys are deleted, the rows stay pending.
                unstarted = []
                while not todo.empty():
                    unstarted.append((todo.get_nowait()[0], False))
                if unstarted:
                    await loop.run_in_executor(store, rows.finish, unstarted)
                    in_hand -= len(unstarted)
            await asyncio.sleep(TICK if found or in_hand else IDLE_SLEEP)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    store.shutdown()


@click.command()
@click.option("--database-url", envvar="DATABASE_URL", required=True)
@click.option("--redis-url", envvar="REDIS_URL", required=True)
@click.option("--whatsapp-url", envvar="WHATSAPP_URL", required=True)
@click.option("--key-prefix", envvar="KEY_PREFIX", default="")
@click.option("--batch-size", envvar="BATCH_SIZE", type=int, default=500)
@click.option("--concurrency", envvar="CONCURRENCY", type=int, default=64)
@click.option(
    "--http-engine", envvar="HTTP_ENGINE", type=click.Choice(["aiohttp", "requests", "urllib3"]), default="aiohttp"
)
@click.option("--partition", type=int, required=True)
@click.option("--of", "of", type=int, required=True)
@click.option("--latencies", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(
    database_url, redis_url, whatsapp_url, key_prefix, batch_size, concurrency, http_engine, partition, of, latencies
):
    """Send the pending rows of one partition the minimal way until SIGTERM."""
    tune_interpreter_for(http_engine)  # as the consumers do: the same interpreter settings
    rows = Rows(database_url, redis_url, key_prefix, partition, of, batch_size)
    stop = Stop()
    post_ms: list[float] = []
    if http_engine == "aiohttp":
        uvloop.run(run_async(rows, whatsapp_url, concurrency, stop, post_ms))
    else:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop.request)
        poster = requests_poster if http_engine == "requests" else urllib3_poster
        run_threads(rows, timed(poster(whatsapp_url, concurrency), post_ms), concurrency, stop)
    latencies.write_text("".join(f"{ms:.3f}\n" for ms in post_ms))


if __name__ == "__main__":
    main()
