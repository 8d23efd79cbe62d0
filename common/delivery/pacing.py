"""Pacing sends to one sender, shared by every consumer on every host.

The rate limit is GCRA with reservations, in one Lua script on Redis's
clock: each send reserves the next free slot (the theoretical arrival time,
TAT) and waits for it, so sends to a sender are spaced `1 / rate` apart
whoever makes them, with no burst at the start of a second. Jitter makes
each gap longer by a random 0..jitter seconds, so the spacing does not look
machine-made.
"""

import random

import redis

MAX_WAIT = 1.0  # seconds ahead a slot may be reserved; later ones are asked for again

# ARGV: gap in µs (1/rate plus this send's jitter), longest wait in µs, key TTL
# slack in ms. Returns {1, µs to wait} for a reserved slot, or {0, µs until
# one can be reserved}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now)
local wait = slot - now
if wait > tonumber(ARGV[2]) then
  return {0, wait - tonumber(ARGV[2])}
end
local next_tat = slot + tonumber(ARGV[1])
local ttl = math.ceil((next_tat - now) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl)
return {1, wait}
"""


class Pacer:
    """One sender's shared pacing: a rate (sends a second, or None) and jitter (seconds)."""

    def __init__(self, client: redis.Redis, key: str, rate: float | None, jitter: float):
        self.key = key
        self.interval = 1 / rate if rate else 0.0
        self.jitter = jitter
        self._reserve = client.register_script(RESERVE)

    def reserve(self) -> tuple[bool, float]:
        """(True, seconds to wait before sending) for a reserved slot, or
        (False, seconds until a slot can be reserved)."""
        gap = self.interval + random.uniform(0, self.jitter)
        granted, micros = self._reserve(keys=[self.key], args=[round(gap * 1e6), round(MAX_WAIT * 1e6), 60_000])
        return bool(granted), micros / 1e6
