"""A circuit breaker per sender, kept in Redis so every consumer on every
host stops sending through a sender that is down, and tries it again together.

States: closed (send), open (do not send until a cool-down ends), half-open
(let a few trial sends through; `successes` of them close it, one failure
opens it again). It opens at once on a refused credential or a sender-down
code, and after `failures` consecutive failures of any consumer.

Redis is asked only when something may change: while the breaker is closed
and no failure is known, a send costs no round trip (the state is re-read
every REFRESH seconds).
"""

import logging
import threading
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds a known "closed" state is trusted without asking Redis
STALE = "stale"  # what `known` says when only Redis can tell
KEY_TTL_MS = 86_400_000  # a breaker nobody touched for a day is forgotten (closed)

# Both scripts also return Redis's clock in µs ("seen at"): answers read in
# several threads are kept in the order Redis gave them, so a "closed" read
# just before the breaker opened cannot overwrite the "open" that followed it.

# ARGV: trials allowed at once while half-open, ms after which a trial that
# never reported back is given up. Returns {allowed 0/1, state, ms until a
# half-open trial, consecutive failures, seen at}.
ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  return {1, 'closed', 0, tonumber(redis.call('HGET', KEYS[1], 'failures') or '0'), seen}
end
if state == 'open' then
  local left = tonumber(redis.call('HGET', KEYS[1], 'until')) - now
  if left > 0 then return {0, 'open', left, 0, seen} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'trials', 0, 'successes', 0, 'trial_at', now)
end
local trials = tonumber(redis.call('HGET', KEYS[1], 'trials') or '0')
local trial_at = tonumber(redis.call('HGET', KEYS[1], 'trial_at') or '0')
if trials >= tonumber(ARGV[1]) then
  if now - trial_at < tonumber(ARGV[2]) then return {0, 'half_open', 0, 0, seen} end
  trials = 0
end
redis.call('HSET', KEYS[1], 'trials', trials + 1, 'trial_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, 'half_open', 0, 0, seen}
"""

# ARGV: outcome (ok, fail, down), failures to open, successes to close,
# cool-down ms, reason, key TTL ms. Returns {state after it, seen at}; the
# state is 'opened' / 'recovered' for the one call that changed it (that caller logs it).
RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local outcome = ARGV[1]
if outcome == 'ok' then
  if state == 'half_open' then
    if redis.call('HINCRBY', KEYS[1], 'successes', 1) >= tonumber(ARGV[3]) then
      redis.call('DEL', KEYS[1])
      return {'recovered', seen}
    end
  elseif state == 'closed' then
    redis.call('HDEL', KEYS[1], 'failures')
  end
  return {state, seen}
end
if state == 'open' and outcome ~= 'down' then
  return {'open', seen}  -- a send that started before it opened
end
if outcome == 'fail' and state == 'closed' then
  if redis.call('HINCRBY', KEYS[1], 'failures', 1) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    return {'closed', seen}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[4]), 'reason', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if state == 'open' then return {'open', seen} end
return {'opened', seen}
"""


GIVE_BACK = """
local trials = tonumber(redis.call('HGET', KEYS[1], 'trials') or '0')
if redis.call('HGET', KEYS[1], 'state') == 'half_open' and trials > 0 then
  redis.call('HINCRBY', KEYS[1], 'trials', -1)
end
return 0
"""


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 10  # consecutive failures that open it
    cooldown: float = 30.0  # seconds open before a half-open trial
    successes: int = 3  # half-open trial successes that close it
    trial_timeout: float = 60.0  # a half-open trial that never reported back is given up after this


class Breaker:
    def __init__(self, client: redis.Redis, key: str, name: str, policy: BreakerPolicy):
        self.client = client
        self.key = key
        self.name = name
        self.policy = policy
        self._allow = client.register_script(ALLOW)
        self._record = client.register_script(RECORD)
        self._give_back = client.register_script(GIVE_BACK)
        self._lock = threading.Lock()
        self.state = "closed"
        self.failures_known = False  # Redis holds failures that our next success should clear
        self.trusted_until = 0.0  # monotonic time until which `state` is used without asking Redis
        self.open_until = 0.0  # monotonic time the open state ends, as far as we know
        self.seen_at = 0  # Redis's clock (µs) when what we know was read: older answers are ignored

    def known(self) -> str | None:
        """What `allow` would say from what is known here, without Redis:
        "closed", None (open), or STALE when only Redis can tell."""
        now = time.monotonic()
        if self.state == "closed" and now < self.trusted_until:
            return "closed"
        if self.state == "open" and now < self.open_until:
            return None
        return STALE

    def allow(self) -> str | None:
        """May a send go through this sender now? "closed", "trial" (one of the
        half-open breaker's few trial sends: give it back if it is not used),
        or None. Asks Redis only when the known state is stale, open and due
        for a trial, or half-open."""
        known = self.known()
        if known is not STALE:
            return known
        allowed, state, left_ms, failures, seen_at = self._allow(
            keys=[self.key], args=[self.policy.successes, int(self.policy.trial_timeout * 1000), KEY_TTL_MS]
        )
        self.remember(state, left_ms, seen_at, failures_known=failures > 0)
        if not allowed:
            return None
        return "trial" if state == "half_open" else "closed"

    def give_back_trial(self) -> None:
        """A trial allowed but not sent (no paced slot, a stop, a lease too short)."""
        self._give_back(keys=[self.key])

    def available_in(self) -> float:
        """Seconds until a send may go through, from what is known (0: now)."""
        if self.state == "open":
            return max(self.open_until - time.monotonic(), 0.0)
        return 0.0

    def needs_record(self, outcome: str) -> bool:
        """False for the common case, a success while closed with no failure
        known: nothing in Redis would change."""
        return not (outcome == "ok" and self.state == "closed" and not self.failures_known)

    def record(self, outcome: str, reason: str = "") -> None:
        """Report a send: 'ok', 'fail' (counts towards opening) or 'down' (opens at once)."""
        if not self.needs_record(outcome):
            return
        state, seen_at = self._record(
            keys=[self.key],
            args=[
                outcome,
                self.policy.failures,
                self.policy.successes,
                int(self.policy.cooldown * 1000),
                reason[:200],
                KEY_TTL_MS,
            ],
        )
        if state == "opened":
            log.error(
                "sender %s is down (%s): no sends through it for %.0f s, then a trial",
                self.name,
                reason or "too many consecutive failures",
                self.policy.cooldown,
            )
        elif state == "recovered":
            log.warning("sender %s is back: %d trial sends went through", self.name, self.policy.successes)
        # After a late failure on an open breaker its end is unknown here: 0 makes the next allow() ask.
        self.remember(
            {"opened": "open", "recovered": "closed"}.get(state, state),
            self.policy.cooldown * 1000 if state == "opened" else 0,
            seen_at,
            failures_known=outcome == "fail" and state == "closed",
        )

    def remember(self, state: str, left_ms: float, seen_at: int, failures_known: bool) -> None:
        """Keep what Redis said, unless a newer answer is already kept."""
        with self._lock:
            if seen_at < self.seen_at:
                return
            self.seen_at = seen_at
            self.state = state
            self.failures_known = failures_known
            now = time.monotonic()
            self.trusted_until = now + REFRESH
            self.open_until = now + left_ms / 1000 if state == "open" else 0.0
