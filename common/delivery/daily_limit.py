"""A sender's daily limit: unique recipients in a rolling 24 hours.

WhatsApp numbers may start conversations with only so many people a day
(Meta's tiers: 250, 1,000, 10,000, 100,000). Each sender keeps a sorted set
in Redis, phone -> when it was first sent to inside the window, so every
consumer on every host counts against the same limit. A phone already in the
set costs nothing; a new one takes a slot if there is one. A send that does
not go through gives its slot back.

Two rows for the same new phone (one person twice in the table) may be sent
at once: the first counts the phone, the second finds it counted. Should the
first fail and give its slot back while the second went through, the phone
would be uncounted; so the second marks it shared, and a shared phone is
never given back (counted once too often at worst, never once too few).
"""

import logging
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

WINDOW_MS = 86_400_000
RECHECK = 30.0  # seconds a sender found full is taken as full without asking Redis (for claiming only)

# KEYS: the sender's recipients set. ARGV: phone, limit, window ms.
# Returns {1, stamp} for a new recipient counted now, {2, 0} for one already
# counted, {0, ms until the oldest leaves the window} at the limit. A phone
# found counted is marked shared by half a millisecond on its time (stamps
# are whole ms): RELEASE, which needs its exact stamp, then leaves it counted.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local counted = redis.call('ZSCORE', KEYS[1], ARGV[1])
if counted then
  local at = tonumber(counted)
  if at == math.floor(at) then redis.call('ZADD', KEYS[1], 'XX', at + 0.5, ARGV[1]) end
  return {2, 0}
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(tonumber(oldest[2]) + window - now, 1)}
"""

# KEYS: the recipients set. ARGV: phone, the stamp its admission returned.
RELEASE = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
"""


@dataclass(frozen=True)
class Admission:
    """A phone allowed through a sender; `stamp` is set when this admission counted it."""

    phone: str
    stamp: int | None


class DailyLimit:
    def __init__(self, client: redis.Redis, key: str, limit: int, sender: str):
        self.key = key
        self.limit = limit
        self.sender = sender
        self.full_until = 0.0  # until then (monotonic) claims need not hope for this sender
        self.next_slot = 0.0  # when the oldest recipient leaves the window, as last heard (monotonic)
        self._admit = client.register_script(ADMIT)
        self._release = client.register_script(RELEASE)

    def full_for(self) -> float:
        """Seconds this sender is taken as full when deciding whether to claim
        at all (0: it may have room). Sends always ask Redis: a recipient
        already counted today costs no slot."""
        return max(self.full_until - time.monotonic(), 0.0)

    def admit(self, phone: str) -> Admission | float:
        """An admission, or the seconds until a slot frees."""
        verdict, value = self._admit(keys=[self.key], args=[phone, self.limit, WINDOW_MS])
        if verdict == 0:
            seconds, now = value / 1000, time.monotonic()
            if now >= self.next_slot:  # newly full, as far as this process knows: say so once
                log.warning(
                    "sender %s is at its daily limit of %d recipients; next slot in %.0f min",
                    self.sender,
                    self.limit,
                    seconds / 60,
                )
            self.next_slot = now + seconds
            self.full_until = now + min(seconds, RECHECK)
            return seconds
        return Admission(phone, int(value) if verdict == 1 else None)

    def release(self, admission: Admission) -> None:
        """Give back the slot of a recipient this admission counted and who was not sent to."""
        if admission.stamp is not None:
            self._release(keys=[self.key], args=[admission.phone, admission.stamp])
            self.full_until = self.next_slot = 0.0


def usage(client: redis.Redis, recipients_key: str, limit_key: str, now_ms: float | None = None) -> dict | None:
    """What status shows of a sender's daily limit: limit, used, seconds until
    the next slot. `now_ms`: Redis's clock, which stamped the recipients (read
    here when not given)."""
    raw = client.get(limit_key)
    if not raw or not str(raw).isdigit():
        return None
    limit = int(raw)
    if now_ms is None:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros / 1000
    used = client.zcount(recipients_key, now_ms - WINDOW_MS, "+inf")
    oldest = client.zrangebyscore(recipients_key, now_ms - WINDOW_MS, "+inf", start=0, num=1, withscores=True)
    next_slot = max(oldest[0][1] + WINDOW_MS - now_ms, 0) / 1000 if used >= limit and oldest else 0.0
    return {"limit": limit, "used": used, "next_slot_in": next_slot}
