"""The seed-style baseline: how the original system moved a row, one step at a time.

One process per partition, each strictly serial: read a page of pending rows,
SETNX each row's job key, then for each queued row GET the key, POST it,
UPDATE the row and DEL the key. One round trip per step, no pipelining, no
concurrency. It is the reference the benchmark's ratio is measured against,
so it is kept as plain as the original, not made slow on purpose.

Run by bench/run.py as `python -m bench.baseline --partition K --of N ...`;
it stops at SIGTERM after the row in hand and writes the POST times (ms,
one per line) to --latencies.
"""

import json
import signal
import time
from pathlib import Path

import click
import redis
import requests

from common.settings import parse_database_url
from common.store.campaign import open_connection

TABLE = "campaign_master_1"
IDLE_SLEEP = 0.1


class Stop:
    def __init__(self):
        self.requested = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request)

    def request(self, _signum, _frame) -> None:
        self.requested = True


def body(phone: str) -> dict:
    """The original system's request body."""
    return {
        "messaging_product": "whatsapp",
        "to": phone,
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }


@click.command()
@click.option("--database-url", envvar="DATABASE_URL", required=True)
@click.option("--redis-url", envvar="REDIS_URL", required=True)
@click.option("--whatsapp-url", envvar="WHATSAPP_URL", required=True)
@click.option("--key-prefix", envvar="KEY_PREFIX", default="")
@click.option("--batch-size", envvar="BATCH_SIZE", type=int, default=500)
@click.option("--partition", type=int, required=True)
@click.option("--of", "of", type=int, required=True)
@click.option("--latencies", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(database_url, redis_url, whatsapp_url, key_prefix, batch_size, partition, of, latencies):
    """Send the pending rows of one partition the seed's way until SIGTERM."""
    stop = Stop()
    target = parse_database_url(database_url)
    connection = open_connection(target, target.database, autocommit=True)
    cursor = connection.cursor()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    session = requests.Session()
    post_ms = []
    while not stop.requested:
        cursor.execute(
            f"SELECT id, column1 FROM {TABLE} WHERE column3 = 1 AND id %% %s = %s ORDER BY id LIMIT %s",
            (of, partition, batch_size),
        )
        rows = cursor.fetchall()
        if not rows:
            time.sleep(IDLE_SLEEP)
            continue
        queued = [
            row_id for row_id, phone in rows if client.setnx(f"{key_prefix}job:{row_id}", json.dumps({"phone": phone}))
        ]
        for row_id in queued:
            if stop.requested:
                break
            key = f"{key_prefix}job:{row_id}"
            phone = json.loads(client.get(key))["phone"]
            started = time.perf_counter()
            response = session.post(
                whatsapp_url, json=body(phone), timeout=10, headers={"Idempotency-Key": f"{TABLE}:{row_id}"}
            )
            post_ms.append((time.perf_counter() - started) * 1000)
            if response.ok:
                cursor.execute(f"UPDATE {TABLE} SET column3 = 0 WHERE id = %s", (row_id,))
                client.delete(key)
    latencies.write_text("".join(f"{ms:.3f}\n" for ms in post_ms))


if __name__ == "__main__":
    main()
