"""Webhook events between the answer to the gateway and MySQL: a Redis list.

A webhook is acknowledged once its events are in the list (one RPUSH), not
after MySQL has them: a gateway's burst is answered in about a millisecond
per request, and MySQL takes the events in batches. A writer takes a batch
from the head, stores it, and only then trims it off, so a crash in between
stores that batch again (every write of it is idempotent), never loses it.
One writer at a time holds the drain lock: two trimming the same head would
drop each other's batch.
"""

import json
import secrets
from dataclasses import asdict

import redis

from common.delivery.receipts import Events, Receipt, Reply
from common.queue import keys
from common.queue.jobs import redis_failure

DRAIN_LOCK_MS = 30_000  # a writer that died frees the inbox after this long


class Inbox:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.key = keys.webhook_inbox(prefix)
        self.lock_key = keys.webhook_drain(prefix)
        self.token = secrets.token_hex(8)

    def keep(self, entries: list[str]) -> None:
        """Keep requests' events (from `entry_of`) in one RPUSH; raises
        ServiceUnavailable (answer 503: the gateway sends them again)."""
        try:
            self.client.rpush(self.key, *entries)
        except redis.RedisError as exc:
            raise redis_failure("keep webhook events", exc) from None

    def depth(self) -> int:
        try:
            return int(self.client.llen(self.key))
        except redis.RedisError as exc:
            raise redis_failure("read the webhook inbox", exc) from None

    def take(self, limit: int) -> tuple[int, list[tuple[str, Events]]] | None:
        """Up to `limit` requests' events from the head, left in place until
        `done`; None when another writer holds the drain lock."""
        try:
            if not self.client.set(self.lock_key, self.token, nx=True, px=DRAIN_LOCK_MS):
                if self.client.get(self.lock_key) != self.token:
                    return None
                self.client.pexpire(self.lock_key, DRAIN_LOCK_MS)
            raw = self.client.lrange(self.key, 0, limit - 1)
        except redis.RedisError as exc:
            raise redis_failure("read the webhook inbox", exc) from None
        return len(raw), [entry for entry in map(decode, raw) if entry]

    def done(self, count: int) -> None:
        """Trim the `count` entries `take` returned: they are stored."""
        try:
            self.client.ltrim(self.key, count, -1)
        except redis.RedisError as exc:
            raise redis_failure("trim the webhook inbox", exc) from None

    def release(self) -> None:
        try:
            if self.client.get(self.lock_key) == self.token:
                self.client.delete(self.lock_key)
        except redis.RedisError:
            pass  # the lock runs out on its own


def entry_of(gateway: str, events: Events) -> str:
    """One request's events as the inbox keeps them."""
    entry = {
        "gateway": gateway,
        "receipts": [asdict(r) for r in events.receipts],
        "replies": [asdict(r) for r in events.replies],
    }
    return json.dumps(entry, separators=(",", ":"))


def decode(raw: str) -> tuple[str, Events] | None:
    """An inbox entry, or None for one this version cannot read (it is dropped with the batch)."""
    try:
        entry = json.loads(raw)
        events = Events(
            [Receipt(**r) for r in entry.get("receipts", [])],
            [Reply(**r) for r in entry.get("replies", [])],
        )
        return str(entry["gateway"]), events
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
