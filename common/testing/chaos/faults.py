"""The faults the schedule holds for a while: Redis refusing writes, Redis
answering BUSY, the endpoint's odd answers and its answers trickled past the
deadline. Each says what it did and, when it did not take, why the run
proved nothing."""

import threading
import time
from collections.abc import Callable

import redis

from common.testing.chaos.config import REQUEST_TIMEOUT
from common.testing.chaos.endpoint import MockEndpoint
from common.testing.chaos.schedule import Step
from common.testing.services import RedisServer

# The held faults of the schedule. Each lasts --phase-seconds, at most half the
# lease: leases are renewed every third of it, so a Redis that refuses or is
# busy that long makes a lease miss one renewal at most, never run out.
PROBE_KEY = "chaos:probe"  # a write the harness tries while Redis must refuse it
BUSY_THRESHOLD_MS = 100  # Redis answers BUSY once a script has run this long...
DEFAULT_BUSY_THRESHOLD_MS = 5000  # ...instead of its default
# A script that keeps Redis busy for ARGV[1] seconds, by Redis's own clock.
BUSY_SCRIPT = """
local t = redis.call('TIME')
local deadline = tonumber(t[1]) + tonumber(t[2]) / 1e6 + tonumber(ARGV[1])
repeat t = redis.call('TIME') until tonumber(t[1]) + tonumber(t[2]) / 1e6 >= deadline
return 1
"""
# 2xx bodies some gateways answer; each must still count as sent.
ODD_BODIES = (
    '{"messages":[{"id":123}]}',  # an integer message id
    "[" * 5000 + "]" * 5000,  # nested deeper than the JSON parser goes
    "<html><body>Message queued</body></html>",
    "",
    '{"messages":[{"id":"wamid.' + "x" * 5000 + '"}]}',  # an id longer than we keep
)
# Retry-After texts that mean "our own backoff". "1e999" (capped at a day)
# is left out: a row answered with it waits a day, and the run cannot finish.
ODD_RETRY_AFTER = ("garbage", "-5", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", "")
ODD_FAIL_STATUS = 429
# Longer than the request deadline, so every answer of the phase is cut.
TRICKLE_SECONDS = REQUEST_TIMEOUT + 1.0
# Variables the roles need from this environment; everything else they get is


class HeldFault:
    """A fault the schedule holds for a while. `began` is None until it
    begins; `problem` says why it proved nothing, when it did not take."""

    name = ""
    during: Callable[[], None] | None = None  # a fault that changes while held sets this

    def __init__(self, say, clock):
        self.say = say
        self.clock = clock
        self.began: float | None = None
        self.held = 0.0

    def step(self, seconds: float) -> Step:
        return Step(self.name, self.begin, self.end, seconds, self.during)

    def begin(self) -> None:
        self.began = self.clock()

    def end(self) -> None:
        self.held = self.clock() - self.began

    def detail(self) -> str:
        """What it did, for the table."""
        raise NotImplementedError

    def problem(self) -> str | None:
        return None


class RedisRefusal(HeldFault):
    """Redis at maxmemory 1 without eviction: every write is refused (OOM)
    while reads still answer. The roles wait and retry, never exit."""

    name = "Redis refusing writes"

    def __init__(self, server: RedisServer, say, clock):
        super().__init__(say, clock)
        self.server = server
        self.refusal: str | None = None  # what a probe write got

    def begin(self) -> None:
        client = self.server.client()
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        super().begin()
        try:
            client.set(PROBE_KEY, "written")
        except redis.ResponseError as exc:
            self.refusal = type(exc).__name__
        self.say(f"Redis refuses writes (maxmemory 1, noeviction); a probe write got {self.refusal or 'OK'}")

    def end(self) -> None:
        self.server.client().config_set("maxmemory", 0)
        super().end()
        self.say(f"Redis takes writes again after {self.held:.1f} s")

    def detail(self) -> str:
        return f"held {self.held:.1f} s at maxmemory 1; a probe write got {self.refusal or 'OK'}"

    def problem(self) -> str | None:
        return None if self.refusal else "Redis took a write at maxmemory 1: the refusal proved nothing"


class RedisBusy(HeldFault):
    """A script keeps Redis busy past busy-reply-threshold: every other
    client is answered BUSY until it ends. The roles wait and retry."""

    name = "Redis answering BUSY"

    def __init__(self, server: RedisServer, seconds: float, say, clock):
        super().__init__(say, clock)
        self.server = server
        self.seconds = seconds
        self.thread: threading.Thread | None = None
        self.answer: str | None = None  # what a probe got while the script ran
        self.error: str | None = None  # the script's own failure
        self.killed = False  # ended early by a SCRIPT KILL (a sentinel's)

    def begin(self) -> None:
        self.server.client().config_set("busy-reply-threshold", BUSY_THRESHOLD_MS)
        self.thread = thread = threading.Thread(target=self.keep_busy, name="redis-busy", daemon=True)
        super().begin()
        thread.start()
        self.answer = self.probe(thread)
        self.say(f"Redis runs a script for {self.seconds:g} s; others get {self.answer or 'answers'}")

    def keep_busy(self) -> None:
        client = redis.Redis(port=self.server.port, socket_timeout=self.seconds + 10, socket_connect_timeout=2)
        try:
            client.eval(BUSY_SCRIPT, 0, self.seconds)
        except redis.RedisError as exc:
            if "Script killed" in str(exc):
                # Sentinels end a busy primary's script with SCRIPT KILL rather
                # than fail it over (--failover): Redis was BUSY until then.
                self.killed = True
            else:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()

    def probe(self, thread: threading.Thread) -> str | None:
        """What another client gets once the script (run by `thread`) has run past the threshold."""
        client = self.server.client()
        deadline = time.monotonic() + BUSY_THRESHOLD_MS / 1000 + 1.0
        while time.monotonic() < deadline and thread.is_alive():
            try:
                client.ping()
            except redis.ResponseError as exc:
                if str(exc).startswith("BUSY"):
                    return "BUSY"
            time.sleep(0.05)
        return None

    def end(self) -> None:
        assert self.thread is not None, "end() before begin()"  # the schedule ends only what began
        self.thread.join(self.seconds + 15)
        self.server.client().config_set("busy-reply-threshold", DEFAULT_BUSY_THRESHOLD_MS)
        super().end()
        self.say(f"Redis answers again after {self.held:.1f} s")

    def detail(self) -> str:
        return (
            f"a script ran {'until a sentinel killed it' if self.killed else f'{self.seconds:g} s'}, "
            f"threshold {BUSY_THRESHOLD_MS} ms; a probe got {self.answer or 'an answer'}"
        )

    def problem(self) -> str | None:
        if self.error:
            return f"the script that keeps Redis busy failed: {self.error}"
        return None if self.answer else "no client was answered BUSY: the phase proved nothing"


class OddAnswers(HeldFault):
    """The endpoint answers 2xx with odd bodies and, instead of 5xx, 429 with
    odd Retry-After texts: a new pair each share of the phase. A 2xx is sent
    whatever its body; each of these Retry-Afters means our own backoff."""

    name = "odd answers"

    def __init__(self, mock: MockEndpoint, seconds: float, say, clock):
        super().__init__(say, clock)
        self.mock = mock
        self.seconds = seconds
        self.shown = -1
        self.before: dict = {}
        self.delivered = self.refused = 0

    def begin(self) -> None:
        self.before = self.mock.stats()
        super().begin()
        self.during()

    def during(self) -> None:
        share = (self.clock() - self.began) / self.seconds
        index = min(int(share * len(ODD_BODIES)), len(ODD_BODIES) - 1)
        if index != self.shown:
            self.shown = index
            self.mock.configure(
                success_body=ODD_BODIES[index], fail_status=ODD_FAIL_STATUS, retry_after=ODD_RETRY_AFTER[index]
            )
            self.say(
                f"the endpoint answers 2xx with {ODD_BODIES[index][:40]!r} ({len(ODD_BODIES[index])} bytes) "
                f"and {ODD_FAIL_STATUS} with Retry-After {ODD_RETRY_AFTER[index]!r}"
            )

    def end(self) -> None:
        self.mock.configure(success_body=None, fail_status=500, retry_after=None)
        super().end()
        after = self.mock.stats()
        self.delivered = after["delivered"] - self.before["delivered"]
        status = str(ODD_FAIL_STATUS)
        self.refused = after["by_status"].get(status, 0) - self.before["by_status"].get(status, 0)
        self.say(f"the endpoint answers as usual again after {self.held:.1f} s")

    def detail(self) -> str:
        return (
            f"held {self.held:.1f} s: {self.delivered} 2xx with {len(ODD_BODIES)} odd bodies, "
            f"{self.refused} {ODD_FAIL_STATUS}s with {len(ODD_RETRY_AFTER)} odd Retry-Afters"
        )


class TrickledAnswers(HeldFault):
    """The endpoint sends each answer's body a byte at a time over longer
    than the request deadline: the send counts as a timeout and is retried
    with the same key, though the endpoint took it. Each such answer allows a
    repeat (the mock lists them)."""

    name = "trickled answers"

    def __init__(self, mock: MockEndpoint, say, clock):
        super().__init__(say, clock)
        self.mock = mock
        self.answers = self.keys = 0  # 2xx answers the mock trickled, and their keys

    def begin(self) -> None:
        self.mock.configure(trickle_seconds=TRICKLE_SECONDS)
        super().begin()
        self.say(
            f"the endpoint trickles every answer over {TRICKLE_SECONDS:g} s (the deadline is {REQUEST_TIMEOUT:g} s)"
        )

    def end(self) -> None:
        self.mock.configure(trickle_seconds=0)
        super().end()
        self.say(f"the endpoint answers at once again after {self.held:.1f} s")

    def detail(self) -> str:
        return (
            f"held {self.held:.1f} s: {self.answers} 2xx in {self.keys} keys taken but answered past "
            f"the {REQUEST_TIMEOUT:g} s deadline"
        )
