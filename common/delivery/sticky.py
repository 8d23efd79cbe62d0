"""Sticky senders: every message for one phone through the same sender.

The sender is chosen by rendezvous (highest random weight) hashing of the
sender's name and the phone, so every consumer on every host, across
restarts, picks the same one without asking anyone, and adding an N-th
sender moves only the phones it now wins: about 1/N of them. With fallback
on, a phone whose sender was stopped moves to the next in its ranking and
is remembered there (a Redis hash), so it does not move back.
"""

import hashlib
import logging
from collections.abc import Iterable, Sequence

import redis

log = logging.getLogger(__name__)

MAX_KNOWN = 100_000  # remembered phones kept in memory; Redis holds them all


def weight(sender: str, phone: str) -> int:
    """A stable pseudo-random weight (not Python's hash(): that changes per process)."""
    digest = hashlib.blake2b(f"{sender}\0{phone}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(senders: Sequence[str], phone: str) -> list[int]:
    """Indexes of `senders`, the phone's own sender first."""
    return sorted(range(len(senders)), key=lambda i: weight(senders[i], phone), reverse=True)


class Remembered:
    """Phones that fell over to another sender, shared through Redis; read
    once per claimed batch, written when a phone moves."""

    def __init__(self, client: redis.Redis, key: str):
        self.client = client
        self.key = key
        self.senders: dict[str, str] = {}  # phone -> sender name, for the phones claimed lately

    def recall(self, phones: Iterable[str]) -> None:
        """One HMGET for a claimed batch's phones."""
        wanted = list(dict.fromkeys(phones))
        if len(self.senders) > MAX_KNOWN:
            self.senders = {}
        if wanted:
            found = self.client.hmget(self.key, wanted)
            self.senders.update((phone, name) for phone, name in zip(wanted, found) if name)

    def remember(self, phone: str, sender: str) -> None:
        self.client.hset(self.key, phone, sender)
        self.senders[phone] = sender
        log.debug("a phone's sender was stopped; it goes through %s from now on", sender)
