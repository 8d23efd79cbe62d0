"""The Redis side: queued jobs, their leases and the counters a status command reads.

Key names are in common.queue.keys.

Claiming a job moves its score to now + lease, so a job whose consumer died
becomes due again by itself. "Now" is always Redis's clock (TIME inside the
scripts), so hosts whose clocks disagree still agree on who holds a lease.
Consumers only read their partition's sorted set, never scan keys, so other
data in the same Redis costs nothing.
"""

import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import MasterNotFoundError

from common.errors import ConfigError, ServiceUnavailable
from common.queue import keys
from common.queue.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client
from common.settings import Partition, redis_tls_context, redis_where, tls_context, tls_refusal

log = logging.getLogger(__name__)

# Redis's clock in ms, for every script that reads or sets a due time or lease.
NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# SET NX keeps the first payload (and its attempt count); ZADD NX adds the job
# to the due set without moving a job that is leased or waiting for a retry,
# and re-adds one whose due entry was lost. A job is due now, or at its
# scheduled time (ms) if that is later: claims never see it before.
# ARGV: key prefix, then id, payload, scheduled time (0: none) per job.
# Returns {newly queued, queue depth}.
ENQUEUE = (
    NOW
    + """
local queued = 0
for i = 2, #ARGV, 3 do
  if redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'NX') then
    queued = queued + 1
  end
  redis.call('ZADD', KEYS[1], 'NX', math.max(now, tonumber(ARGV[i + 2])), ARGV[i])
end
return {queued, redis.call('ZCARD', KEYS[1])}
"""
)

# Take up to ARGV[2] due jobs and lease them for ARGV[1] ms. A due entry whose
# job key is gone was finished elsewhere and is dropped. A job key holding
# something other than a string (MGET reads it as nil, EXISTS finds it) comes
# back as '' (malformed) instead of aborting the script. A job still marked
# leased (KEYS[2]) was claimed before and neither finished nor put back: its
# consumer died or stalled, and this claim is a reclaim, counted in the stats
# hash (KEYS[3]). One variadic command per step, not three per job. Returns
# {reclaims, Redis's now, lease end, id, payload, id, payload, ...}.
CLAIM = (
    NOW
    + """
local lease_until = now + tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {0, now, lease_until}
if #ids == 0 then return out end
local job_keys = {}
for i, id in ipairs(ids) do job_keys[i] = ARGV[3] .. id end
local payloads = redis.call('MGET', unpack(job_keys))
local scores, fields, gone = {}, {}, {}
for i, id in ipairs(ids) do
  local payload = payloads[i]
  if payload == false and redis.call('EXISTS', job_keys[i]) == 1 then payload = '' end
  if payload == false then
    gone[#gone + 1] = id
  else
    scores[#scores + 1] = lease_until
    scores[#scores + 1] = id
    fields[#fields + 1] = id
    fields[#fields + 1] = lease_until
    out[#out + 1] = id
    out[#out + 1] = payload
  end
end
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
if #fields > 0 then
  redis.call('ZADD', KEYS[1], 'XX', unpack(scores))
  out[1] = #fields / 2 - redis.call('HSET', KEYS[2], unpack(fields))
  if out[1] > 0 then redis.call('HINCRBY', KEYS[3], 'reclaimed', out[1]) end
end
return out
"""
)

# Reschedule jobs (ARGV[1] is the job key prefix, then id, lease, delay in
# ms, payload for each job) only while this consumer still
# holds the lease it was given: if the lease ran out and another consumer
# claimed the job, its new lease must not be cut short. An empty payload
# leaves the job's payload as it is.
RESCHEDULE = (
    NOW
    + """
local moved = 0
for i = 2, #ARGV, 4 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[i + 2]), ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    if ARGV[i + 3] ~= '' then
      redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 3], 'XX')
    end
    moved = moved + 1
  end
end
return moved
"""
)


# Extend leases (ARGV[1] = lease length in ms, then id, current lease end
# pairs) that are still ours. Returns {Redis's now, new lease end, ids extended...}.
EXTEND = (
    NOW
    + """
local lease_until = now + tonumber(ARGV[1])
local extended = {now, lease_until}
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', lease_until, ARGV[i])
    extended[#extended + 1] = ARGV[i]
  end
end
return extended
"""
)


RATE_BUCKET = 10  # seconds per bucket of the sent counts behind the send rate


MAX_ATTEMPTS_KEPT = 1_000_000  # a larger count read back from Redis is not ours; any max attempts is below it


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Job:
    """What the sender needs for one row, as carried in `job:<id>`."""

    row_id: int
    phone: str | None
    attempts: int = 0
    # The endpoint accepted it but MySQL could not be told yet: whoever claims
    # the job next records it without sending again.
    sent: bool = False
    params: dict = field(default_factory=dict)  # column -> text, the row's message variables
    due_ms: int | None = None  # its send time (unix ms): not claimed before it
    valid_until_ms: int | None = None  # not sent after it: the row fails "expired"
    problem: str | None = None  # why the producer could not time it; the row fails with it
    # With `sent`: the accepted send's message id and sender, for the history
    # line whoever records it writes (receipts are matched by that id).
    message_id: str | None = None
    sender: str | None = None

    def encode(self) -> str:
        value: dict[str, Any] = {"phone": self.phone, "attempts": self.attempts}
        if self.sent:
            value["sent"] = True
        if self.params:
            value["params"] = self.params
        for name in ("due_ms", "valid_until_ms", "problem", "message_id", "sender"):
            if getattr(self, name) is not None:
                value[name] = getattr(self, name)
        return json.dumps(value, separators=(",", ":"))

    def expired(self, now_ms: int) -> bool:
        return self.valid_until_ms is not None and now_ms > self.valid_until_ms


@dataclass(frozen=True)
class Lease:
    """A lease end on Redis's clock, and how far ahead of ours that clock was
    when Redis said so: what a consumer needs to know how long it has left."""

    until_ms: int
    clock_offset_ms: int


@dataclass(frozen=True)
class Claim:
    """A job this consumer may send until `lease_until_ms`; `job` is None when
    the stored payload was malformed."""

    row_id: int
    lease_until_ms: int
    job: Job | None


def decode_job(row_id: int, raw: str) -> Job | None:
    """The job stored under job:<row_id>, or None if it is not one of ours."""
    try:
        value = json.loads(raw)
        phone, attempts, sent = value["phone"], int(value.get("attempts", 0)), value.get("sent", False)
        params = value.get("params", {})
        due, valid_until, problem = value.get("due_ms"), value.get("valid_until_ms"), value.get("problem")
        message_id, sender = value.get("message_id"), value.get("sender")
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None
    if (phone is not None and not isinstance(phone, str)) or not isinstance(sent, bool):
        return None
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return None
    if not all(t is None or (isinstance(t, int) and not isinstance(t, bool)) for t in (due, valid_until)):
        return None
    if not all(text is None or isinstance(text, str) for text in (problem, message_id, sender)):
        return None
    attempts = min(max(attempts, 0), MAX_ATTEMPTS_KEPT)
    return Job(row_id, phone, attempts, sent, params, due, valid_until, problem, message_id, sender)


def tls_failure(what: str, refusal: str) -> ConfigError:
    return ConfigError(f"Redis TLS failed ({what}): {refusal}; check the ssl_ options in REDIS_URL (docs/tls.md)")


def redis_failure(what: str, exc: redis.RedisError) -> Exception:
    """A Redis error as what it means for a role: refused credentials, and a
    TLS handshake refused for a reason the settings cause (a certificate the
    CA does not vouch for, a missing client certificate), are configuration
    errors; anything else (unreachable, timeouts, and server refusals such as
    OOM at maxmemory, READONLY after a failover, MISCONF, BUSY, LOADING) means
    "Redis is unavailable": wait and try again."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return ConfigError(f"Redis refused the credentials in REDIS_URL: {exc}")
    refusal = tls_refusal(exc)
    if refusal:
        return tls_failure(what, refusal)
    if isinstance(exc, MasterNotFoundError):
        return ServiceUnavailable(f"Redis is unreachable ({what}): no sentinel names a primary")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(exc, redis.BusyLoadingError):
        return ServiceUnavailable(f"Redis is unreachable ({what}): {exc}")
    return ServiceUnavailable(f"Redis is unavailable ({what}): {exc}")


def connect(url: str) -> redis.Redis:
    """A client for REDIS_URL (TLS options in its query, as redis-py reads
    them), or for the primary its sentinels name (common.queue.sentinel);
    fails with one line if Redis does not answer."""
    if is_sentinel_url(url):
        client = sentinel_client(
            parse_sentinel_url(url), decode_responses=True, socket_timeout=10, socket_connect_timeout=5
        )
    else:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
    what = f"connect to {redis_where(url)}"
    try:
        client.ping()
    except redis.RedisError as exc:
        failure = redis_failure(what, exc)
        refusal = (tls_alert(url) or tls_only(url)) if isinstance(failure, ServiceUnavailable) else None
        if refusal:
            failure = tls_failure(what, refusal)
        raise failure from None
    return client


def tls_alert(url: str, wait: float = 1.0) -> str | None:
    """Why a TLS server hung up on us, if it says so. Under TLS 1.3 a server
    checks the client certificate after the handshake, so redis-py's first
    write meets a closed socket (an EOF, which looks like an outage); a
    handshake of our own followed by a read gets the alert the server sent
    (certificate required, unknown CA). A handshake that gets no answer may be
    a plain Redis reading it as a command: a PING tells. None when nothing
    points at the settings."""
    context = redis_tls_context(url)
    parts = urlsplit(url)
    if context is None or parts.hostname is None:
        return None
    address = (parts.hostname, parts.port or 6379)
    try:
        with socket.create_connection(address, timeout=wait) as raw:
            try:
                tls = context.wrap_socket(raw, server_hostname=parts.hostname)
            except TimeoutError:
                return plain_redis(address, wait)
            with tls:
                tls.recv(1)
    except TimeoutError:
        return None  # it took us and waits for a command
    except OSError as exc:
        return tls_refusal(exc)
    return None


def tls_only(url: str, wait: float = 1.0) -> str | None:
    """Why a server hangs up on a plain redis:// URL, if it is because it
    takes TLS only (it reads our first command as a broken handshake, which
    looks like an outage). A handshake of our own that checks nothing tells:
    it completes, or the server answers it with a TLS alert. None otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname is None:
        return None
    context = tls_context("REDIS_URL", verify=False, check_hostname=False)  # only asking whether it speaks TLS
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=wait) as raw:
            with context.wrap_socket(raw, server_hostname=parts.hostname):
                pass
    except ssl.SSLError as exc:
        if "ALERT" not in str(exc).upper():
            return None  # not TLS talking back
    except OSError:
        return None
    return "the server takes TLS only on that port (use rediss:// with ssl_ca_certs)"


def plain_redis(address: tuple[str, int], wait: float) -> str | None:
    try:
        with socket.create_connection(address, timeout=wait) as raw:
            raw.sendall(b"PING\r\n")
            answer = raw.recv(64)
    except OSError:
        return None
    # A RESP answer: +PONG, or an error such as -NOAUTH.
    return "the server speaks Redis without TLS on that port (use redis://)" if answer[:1] in (b"+", b"-") else None


class JobQueue:
    """One partition's queue. Every method is one round trip, whatever the batch size."""

    def __init__(self, client: redis.Redis, partition: Partition, prefix: str = ""):
        self.redis = client
        self.partition = partition
        self.job_prefix = keys.job_prefix(prefix)
        self.due_key = keys.due(prefix, partition)
        self.leased_key = keys.leased(prefix, partition)
        self.stats_key = keys.stats(prefix, partition)
        self.scan_key = keys.scanned(prefix, partition)
        self.sent_at_prefix = keys.sent_at_prefix(prefix, partition)
        self.per_minute_key = keys.sent_per_minute(prefix, partition)
        self.sending_since_key = keys.sending_since(prefix, partition)
        self._enqueue = client.register_script(ENQUEUE)
        self._claim = client.register_script(CLAIM)
        self._reschedule = client.register_script(RESCHEDULE)
        self._extend = client.register_script(EXTEND)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise redis_failure(what, exc) from None

    def job_key(self, row_id: int) -> str:
        return f"{self.job_prefix}{row_id}"

    def enqueue(self, jobs: list[Job]) -> tuple[int, int]:
        """Queue jobs not queued yet; returns (how many were new, queue depth)."""
        if not jobs:
            return 0, self.depth()
        args: list[Any] = [self.job_prefix]
        for job in jobs:
            args += [job.row_id, job.encode(), job.due_ms or 0]
        queued, depth = self._call("enqueue", self._enqueue, keys=[self.due_key], args=args)
        return queued, depth

    def queue_was_lost(self) -> bool:
        """True once after Redis lost this partition's queue (restarted empty,
        flushed) or on first use: then producers must read every pending row
        again. The marker is set at once, before that full read, so a loss
        during the read is seen by the next poll."""
        return bool(self._call("check the queue marker", self.redis.set, self.scan_key, now_ms(), nx=True))

    def depth(self) -> int:
        """Jobs in the partition's queue: waiting, leased or backing off."""
        return self._call("depth", self.redis.zcard, self.due_key)

    def claim(self, limit: int, lease_seconds: float) -> tuple[list[Claim], list[str], int, Lease]:
        """Lease up to `limit` due jobs. Also returns due entries that are not
        row ids, how many of the claims took over a lapsed lease, and the lease."""
        asked_at = now_ms()
        reclaimed, redis_now, lease_until, *flat = self._call(
            "claim",
            self._claim,
            keys=[self.due_key, self.leased_key, self.stats_key],
            args=[int(lease_seconds * 1000), limit, self.job_prefix],
        )
        lease = Lease(lease_until, redis_now - asked_at)
        claims, foreign = [], []
        for member, raw in zip(flat[::2], flat[1::2]):
            if not member.isdigit():
                foreign.append(member)
                continue
            row_id = int(member)
            claims.append(Claim(row_id, lease_until, decode_job(row_id, raw)))
        if foreign:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self.due_key, *foreign)
            pipe.hdel(self.leased_key, *foreign)
            self._call("drop foreign entries", pipe.execute)
        return claims, foreign, reclaimed, lease

    def finish(self, row_ids: list[int], counter: str) -> None:
        """Remove finished jobs (after MySQL has recorded the outcome) and count them."""
        if not row_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*(self.job_key(r) for r in row_ids))
        pipe.zrem(self.due_key, *row_ids)
        pipe.hdel(self.leased_key, *map(str, row_ids))
        pipe.hincrby(self.stats_key, counter, len(row_ids))
        if counter == "sent":
            now = int(time.time())
            bucket = f"{self.sent_at_prefix}{now // RATE_BUCKET}"
            pipe.incrby(bucket, len(row_ids))
            pipe.expire(bucket, RATE_BUCKET * 20)
            pipe.hincrby(self.per_minute_key, str(now // 60), len(row_ids))
            pipe.expire(self.per_minute_key, 86_400)
            pipe.set(self.sending_since_key, now_ms(), nx=True)
            pipe.expire(self.sending_since_key, 60)
        self._call("finish", pipe.execute)

    def reschedule(self, moves: list[tuple[int, int, int, Job | None]]) -> int:
        """Move claimed jobs (row id, lease end, ms from now until it is due,
        new payload or None) if their lease is still ours. Returns how many moved."""
        if not moves:
            return 0
        args: list[Any] = [self.job_prefix]
        for row_id, lease_ms, delay_ms, job in moves:
            args += [row_id, lease_ms, max(int(delay_ms), 0), job.encode() if job else ""]
        return self._call("reschedule", self._reschedule, keys=[self.due_key, self.leased_key], args=args)

    def extend(self, leases: dict[int, int], lease_seconds: float) -> tuple[set[int], Lease]:
        """Extend leases {row id: current lease end} that are still ours by
        `lease_seconds` from now; returns the rows extended and their new lease."""
        asked_at = now_ms()
        args = [int(lease_seconds * 1000)]
        for row_id, lease_ms in leases.items():
            args += [row_id, lease_ms]
        redis_now, until, *ids = self._call("extend", self._extend, keys=[self.due_key], args=args)
        return {int(i) for i in ids}, Lease(until, redis_now - asked_at)

    def remember_sent(self, jobs: list[Job]) -> None:
        """Mark queued jobs as accepted by the endpoint, for when MySQL cannot be told."""
        if jobs:
            pipe = self.redis.pipeline(transaction=False)
            for job in jobs:
                pipe.set(self.job_key(job.row_id), replace(job, sent=True).encode(), xx=True)
            self._call("remember sent", pipe.execute)

    def count(self, counter: str, amount: int) -> None:
        if amount:
            self._call("count", self.redis.hincrby, self.stats_key, counter, amount)

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._call("stats", self.redis.hgetall, self.stats_key).items()}
