"""Reading a campaign's timing settings: send rates ('80/s'), the daily
send window ('09:00-18:00' in a time zone), durations ('3h') and moments
('2026-12-07 09:00'). Plain values, no I/O: settings check them at start-up;
the producer, the consumer's loop and the pacer use them.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import ConfigError

RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", re.IGNORECASE)
PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """'80/s', '20/min', '500/h' → sends per second."""
    match = RATE.fullmatch(text or "")
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"rate {text!r} is not like 80/s, 20/min or 500/h")
    return float(match[1]) / PER[match[2].lower()]


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
        start, end = (clock(int(m[1]), int(m[2])) for m in times if m)
        if start == end:
            raise ConfigError(f"send window {text!r} is empty")
        return cls(start, end, zone_of(timezone))

    def local(self, at: datetime | None) -> datetime:
        """`at` (default: now) in the window's zone; astimezone(None) is the host's."""
        return (at or datetime.now(UTC)).astimezone(self.zone)

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


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
SECONDS_PER = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str | None) -> float:
    """'3h', '90m', '1h30m', '2d', '45s' or a plain number of seconds → seconds."""
    spoken = (text or "").strip()
    try:
        seconds = float(spoken)
    except ValueError:
        parts = DURATION.findall(spoken)
        if not parts or "".join(f"{n}{u}" for n, u in parts).lower() != re.sub(r"\s+", "", spoken).lower():
            raise ConfigError(f"duration {text!r} is not like 3h, 90m, 1h30m or 3600") from None
        seconds = sum(float(n) * SECONDS_PER[u.lower()] for n, u in parts)
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"duration {text!r} must be positive")
    return seconds


def zone_of(timezone: str | None) -> ZoneInfo | None:
    """SEND_TIMEZONE as a zone; None is the host's local time."""
    try:
        return ZoneInfo(timezone) if timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"time zone {timezone!r} is unknown (use a name like Asia/Jakarta)") from None


def moment(text: str, zone: ZoneInfo | None) -> float:
    """'2026-12-07 09:00' (or a date, or ISO with an offset) as unix seconds;
    a time without an offset is wall-clock time in `zone`. ValueError if it is not one."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone) if zone else value.astimezone()
    return value.timestamp()
