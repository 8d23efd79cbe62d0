"""Pacing sends to one sender, shared by every consumer on every host, and
the daily window in which sends may happen at all.

The rate limit is GCRA with reservations, in one Lua script on Redis's
clock: each send reserves the next free slot (the theoretical arrival time,
TAT) and waits for it, so sends to a sender are spaced `1 / rate` apart
whoever makes them, with no burst at the start of a second. Jitter makes
each gap longer by a random 0..jitter seconds, so the spacing does not look
machine-made.
"""

import random
import re
from dataclasses import dataclass
from datetime import datetime, time as clock, timedelta, timezone as tz
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from common.errors import ConfigError

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
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + tonumber(ARGV[3]))
return {1, wait}
"""

RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", re.IGNORECASE)
PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """'80/s', '20/min', '500/h' → sends per second."""
    match = RATE.fullmatch(text or "")
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"rate {text!r} is not like 80/s, 20/min or 500/h")
    return float(match[1]) / PER[match[2].lower()]


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


TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class SendWindow:
    """Hours of the day sends may start, in a time zone; '22:00-06:00' spans midnight.
    Without a zone, the host's local time, with its offset of the moment: a
    window kept from before a daylight-saving change moves with the clocks."""

    start: clock
    end: clock
    zone: ZoneInfo | None

    @classmethod
    def parse(cls, text: str, timezone: str | None) -> "SendWindow":
        parts = (text or "").split("-")
        times = [TIME_OF_DAY.fullmatch(p.strip()) for p in parts]
        if len(parts) != 2 or not all(times):
            raise ConfigError(f"send window {text!r} is not like 09:00-18:00")
        start, end = (clock(int(m[1]), int(m[2])) for m in times)
        if start == end:
            raise ConfigError(f"send window {text!r} is empty")
        try:
            zone = ZoneInfo(timezone) if timezone else None
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"time zone {timezone!r} is unknown (use a name like Asia/Jakarta)") from None
        return cls(start, end, zone)

    def local(self, at: datetime | None) -> datetime:
        """`at` (default: now) in the window's zone; astimezone(None) is the host's."""
        return (at or datetime.now(tz.utc)).astimezone(self.zone)

    def is_open(self, at: datetime | None = None) -> bool:
        now = self.local(at).time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def opens_in(self, at: datetime | None = None) -> float:
        """Seconds until the window next opens (0 while it is open)."""
        now = self.local(at)
        if self.is_open(now):
            return 0.0
        opening = now.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        if opening <= now:
            opening += timedelta(days=1)
        return (opening - now).total_seconds()

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone or 'local time'}"
