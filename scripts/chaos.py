"""The chaos run: the four processes send a campaign to the mock endpoint while
it fails and hangs some sends, a random process is SIGKILLed every few
seconds, and a schedule of faults runs one after another: Redis refuses
writes for a few seconds, restarts empty, answers BUSY for a few seconds; the
endpoint answers odd bodies and Retry-After texts; MySQL restarts; the
endpoint trickles its answers past the request deadline. At the end one
table says whether anything was lost or sent again without a reason.

The run owns its services: a private redis-server without persistence (so a
restart comes back empty) and a private MariaDB in a temporary directory, both
on free ports, so stopping them harms nothing else (common/testing/services.py
starts them, common/testing/processes.py its child processes). Run it with
`scripts/chaos`; `--help` lists the knobs.

A repeat has a reason (README, "The delivery guarantee") in three cases only:
  * a consumer was SIGKILLed after the endpoint answered 2xx for rows of its
    partition that MySQL did not yet show as sent: those rows are "exposed"
    and each may be sent once more;
  * Redis restarted empty while jobs were leased: each may be sent once more;
  * the endpoint took a message but its answer never arrived in time (it
    trickled past WHATSAPP_TIMEOUT, so the send counts as a timeout and is
    retried with the same key): each such answer allows one more send.
Any other repeat, a pending row with nothing queued, or a row marked sent that
the endpoint never took fails the run.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pymysql
import redis
import requests

from common.delivery.engines import ENGINES
from common.queue.jobs import JobQueue
from common.settings import Partition
from common.store.campaign import FAILED, PENDING, SENT
from common.testing.processes import SetupFailed, spawn, stop_process, wait_until
from common.testing.services import MariaDB, RedisServer, load_schema

TABLE = "campaign_master_1"
DATABASE = "campaign"
PRODUCERS = ["producers.odd", "producers.even"]
CONSUMER_PARTITION = {"consumers.odd": 1, "consumers.even": 0}  # id % 2 of the rows each one sends
ROLES = PRODUCERS + list(CONSUMER_PARTITION)

# Role settings. Hung sends (the mock hangs HANG_SECONDS) end by the request
# timeout; the lease is the project's minimum, 3 x that timeout, so a killed
# consumer's jobs come back soon. With 15 % faults a row fails only after
# MAX_ATTEMPTS faults in a row, which practically never happens.
REQUEST_TIMEOUT = 2.0
LEASE_SECONDS = 6.0
HANG_SECONDS = 5.0
RETRY_DELAY = 0.2
MAX_ATTEMPTS = 20
BATCH_SIZE = 500
POLL_INTERVAL = 0.5
# While answers trickle every send fails: the breaker stops the sender after a
# few in a row, and its default 30 s rest would stall the run for nothing.
BREAKER_COOLDOWN = 2.0

TICK = 0.25  # seconds between looks at the run
REPORT_EVERY = 10.0
MAX_RESTART_PAUSE = 1.0  # a killed process comes back after 0 to this many seconds
EXIT_RESTART_PAUSE = 1.0  # a process that exited on its own comes back after this
REDIS_DOWN_SECONDS = 1.0
# After a SIGKILL the mock may still be writing answers it had decided on; they count as delivered.
ANSWER_GRACE = 0.3
SETTLE_QUIET = 30.0  # the run has settled when nothing changed for this long...
SETTLE_LIMIT = 180.0  # ...or after this long without chaos
STOP_GRACE = 15.0
ROLE_START_SECONDS = 5.0  # a role this old has its signal handlers

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
# set here, so nothing in .env can point them at a real campaign.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class Unreachable(Exception):
    """The private MySQL does not answer (it is being restarted)."""


class Campaign:
    """The harness's view of the campaign table; reconnects after an outage."""

    def __init__(self, mariadb: MariaDB):
        self.mariadb = mariadb
        self.connection = None

    def query(self, sql: str, args=None) -> tuple:
        try:
            if self.connection is None:
                self.connection = self.mariadb.connect(DATABASE)
            with self.connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall()
        except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
            self.close()
            raise Unreachable(str(exc)) from None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except pymysql.MySQLError:
                pass  # the server already dropped it
            self.connection = None

    def create(self, rows: int) -> None:
        """The database, schema.sql, and `rows` pending rows with ids 1..rows."""
        with self.mariadb.connect(None) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"USE {DATABASE}")
            load_schema(cursor)
            # The phone of row N is phone_of(N), so the mock's count per phone checks its count per key.
            cursor.execute(
                f"INSERT INTO {TABLE} (id, column1, column3)"
                f" SELECT seq, CONCAT('62812', LPAD(seq, 8, '0')), {PENDING} FROM seq_1_to_{rows}"
            )

    def counts(self) -> dict[int, int]:
        """Rows by status: PENDING, SENT, FAILED."""
        found = dict(self.query(f"SELECT column3, COUNT(*) FROM {TABLE} GROUP BY column3"))
        return {status: int(found.get(status, 0)) for status in (PENDING, SENT, FAILED)}

    def ids(self, status: int, partition: int | None = None) -> set[int]:
        sql = f"SELECT id FROM {TABLE} WHERE column3 = %s"
        args = [status]
        if partition is not None:
            sql += " AND id %% 2 = %s"
            args.append(partition)
        return {row_id for (row_id,) in self.query(sql, args)}


class MockEndpoint:
    """common.mock_whatsapp as a process with injected failures and hangs; never killed."""

    def __init__(self, workdir: Path, fail_rate: float, timeout_rate: float):
        self.log = workdir / "logs" / "mock.log"
        self.argv = [
            sys.executable,
            "-m",
            "common.mock_whatsapp",
            "--port",
            "0",
            "--fail-rate",
            str(fail_rate),
            "--timeout-rate",
            str(timeout_rate),
            "--hang-seconds",
            str(HANG_SECONDS),
        ]
        self.process = None
        self.url = None

    def start(self) -> None:
        self.process = spawn(self.argv, self.log)

        def listening() -> bool:
            match = re.search(r"listening on (http://\S+)", self.log.read_text())
            if match:
                self.url = match.group(1)
            elif self.process.poll() is not None:
                raise SetupFailed(f"the mock endpoint exited; see {self.log}")
            return bool(match)

        wait_until(listening, 20, "the mock endpoint listening", self.log)

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_mock/stats", timeout=30).json()

    def deliveries(self) -> dict[str, int]:
        """Idempotency key -> how many times the mock answered 2xx for it."""
        return requests.get(f"{self.url}/_mock/deliveries", timeout=30).json()

    def recipients(self) -> dict[str, int]:
        """Phone ("to") -> how many times the mock answered 2xx for it."""
        return requests.get(f"{self.url}/_mock/recipients", timeout=30).json()

    def trickled(self) -> dict[str, int]:
        """Idempotency key -> how many of its 2xx answers the mock trickled."""
        return requests.get(f"{self.url}/_mock/trickled", timeout=30).json()

    def configure(self, **changes) -> None:
        requests.post(f"{self.url}/_mock/config", json=changes, timeout=30).raise_for_status()


def phone_of(row_id: int) -> str:
    return f"62812{row_id:08d}"


def row_of(key: str) -> int | None:
    """The row id in an idempotency key `<table>:<id>`, or None if the key is not one of ours."""
    table, _, row_id = key.partition(":")
    return int(row_id) if table == TABLE and row_id.isdigit() else None


def deliveries_by_row(deliveries: dict[str, int]) -> dict[int, int]:
    return {row_of(key): count for key, count in deliveries.items() if row_of(key) is not None}


@dataclass
class Role:
    module: str
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    starts: int = 0


@dataclass(frozen=True)
class Exit:
    """A role that ended without being killed by the run: always a failure,
    since long-running roles wait for MySQL and Redis instead of exiting."""

    module: str
    code: int
    at: float


class Roles:
    """The four processes, each with a log; restarts what was killed or exited."""

    def __init__(self, env: dict, logs: Path, clock):
        self.env = env
        self.logs = logs
        self.clock = clock
        self.roles = {module: Role(module) for module in ROLES}
        self.exits: list[Exit] = []

    def log_path(self, module: str) -> Path:
        return self.logs / f"{module.replace('.', '-')}.log"

    def note(self, module: str, text: str) -> None:
        """A marker line in the role's log, so its lines can be matched with the run's events."""
        with open(self.log_path(module), "a") as log:
            log.write(f"=== chaos {self.clock():.1f} s: {text} ===\n")

    def start(self, module: str) -> None:
        role = self.roles[module]
        role.starts += 1
        self.note(module, f"start #{role.starts}")
        role.process = spawn([sys.executable, "-m", module], self.log_path(module), self.env)
        role.started_at, role.restart_at = self.clock(), None

    def running(self) -> list[str]:
        return [m for m, role in self.roles.items() if role.process is not None and role.process.poll() is None]

    def all_up_for(self, seconds: float) -> bool:
        now = self.clock()
        return all(
            role.process is not None and role.process.poll() is None and now - role.started_at >= seconds
            for role in self.roles.values()
        )

    def kill(self, module: str, restart_after: float) -> None:
        """SIGKILL, wait until it is gone, and restart it after `restart_after` seconds."""
        role = self.roles[module]
        role.process.kill()
        role.process.wait()
        self.note(module, "SIGKILL")
        role.process, role.restart_at = None, self.clock() + restart_after

    def supervise(self) -> None:
        """Notice processes that exited on their own and (re)start what is due."""
        now = self.clock()
        for module, role in self.roles.items():
            if role.process is not None and role.process.poll() is not None:
                code = role.process.returncode
                self.exits.append(Exit(module, code, now))
                self.note(module, f"exited {code}")
                role.process, role.restart_at = None, now + EXIT_RESTART_PAUSE
            if role.process is None and role.restart_at is not None and now >= role.restart_at:
                self.start(module)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM all four at once, as honcho does; None for one that had to be SIGKILLed."""
        for role in self.roles.values():
            role.restart_at = None
            if role.process is not None and role.process.poll() is None:
                role.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        return {
            m: stop_process(role.process, max(deadline - time.monotonic(), 0.1), signalled=True)
            for m, role in self.roles.items()
            if role.process is not None
        }

    def kill_all(self) -> None:
        for role in self.roles.values():
            role.restart_at = None
            if role.process is not None and role.process.poll() is None:
                role.process.kill()
                role.process.wait()

    def tracebacks(self) -> dict[str, int]:
        return {
            m: self.log_path(m).read_text(errors="replace").count("Traceback")
            for m in ROLES
            if self.log_path(m).exists()
        }


# Why a row may be sent again, in the order repeats are put down to them: an
# answer that never arrived is always retried, a kill or a restart only may be.
ANSWER_CUT, CONSUMER_KILL, REDIS_RESTART = "answers cut by the deadline", "consumer kills", "the Redis restart"


class RepeatWindows:
    """Which rows may be sent again, and how often, because of the run's faults.

    A row exposed by kills at k different delivery counts may be delivered k
    more times (two kills with no send in between expose it once); each Redis
    restart that found it leased allows one more; so does each of its 2xx
    answers that the mock trickled past the request deadline.
    """

    def __init__(self):
        self.kill_counts: dict[int, set[int]] = defaultdict(set)
        self.redis_leased: Counter = Counter()
        self.answers_cut: Counter = Counter()

    def consumer_killed(self, exposed: dict[int, int]) -> None:
        for row_id, count in exposed.items():
            self.kill_counts[row_id].add(count)

    def redis_restarted(self, leased: set[int]) -> None:
        self.redis_leased.update(leased)

    def answers_trickled(self, trickled: dict[int, int]) -> None:
        self.answers_cut.update(trickled)

    def windows(self, row_id: int) -> dict[str, int]:
        return {
            ANSWER_CUT: self.answers_cut.get(row_id, 0),
            CONSUMER_KILL: len(self.kill_counts.get(row_id, ())),
            REDIS_RESTART: self.redis_leased.get(row_id, 0),
        }

    def allowed(self, row_id: int) -> int:
        return 1 + sum(self.windows(row_id).values())

    def explain(self, row_id: int, deliveries: int) -> Counter:
        """The row's repeats put down to its windows, as far as they reach."""
        left, reasons = deliveries - 1, Counter()
        for reason, allowed in self.windows(row_id).items():
            reasons[reason] = min(left, allowed)
            left -= reasons[reason]
        return reasons


@dataclass
class Kill:
    module: str
    exposed: int | None = None  # consumers: rows delivered but not yet recorded as sent


@dataclass
class Options:
    rows: int
    kill_every: float
    time_limit: float
    mysql_down_seconds: float
    fail_rate: float
    timeout_rate: float
    concurrency: int
    http_engine: str
    redis_refusals: bool
    redis_busy: bool
    odd_answers: bool
    trickle: bool
    phase_seconds: float
    seed: int | None
    keep: bool


@dataclass
class Step:
    """One fault of the schedule: `begin` starts it and `end`, `seconds` later
    (at once when the chaos stops early), undoes it; `during` runs at every
    look at the run in between."""

    name: str
    begin: Callable[[], None]
    end: Callable[[], None] | None = None
    seconds: float = 0.0
    during: Callable[[], None] | None = None


class Schedule:
    """The faults one after another, spread over the run: step k of n begins
    once k/(n+1) of the rows are done or of the time limit has passed, after
    the step before it has ended and every outage is over."""

    def __init__(self, steps: list[Step], clock):
        self.steps = steps
        self.clock = clock
        self.next = 0
        self.active: Step | None = None
        self.ends_at = 0.0

    def advance(self, share_done: float, quiet: bool) -> None:
        """End the step whose time is up, or begin the next one when it is due."""
        if self.active is not None:
            if self.clock() < self.ends_at:
                if self.active.during is not None:
                    self.active.during()
                return
            self.finish()
        if quiet and self.next < len(self.steps) and share_done >= (self.next + 1) / (len(self.steps) + 1):
            step = self.steps[self.next]
            self.next += 1
            self.active = step
            step.begin()
            self.ends_at = self.clock() + step.seconds

    def finish(self) -> None:
        """End the step under way, if any."""
        step, self.active = self.active, None
        if step is not None and step.end is not None:
            step.end()

    def done(self) -> bool:
        return self.active is None and self.next == len(self.steps)

    def not_begun(self) -> list[str]:
        return [step.name for step in self.steps[self.next :]]


@dataclass
class Findings:
    """The end state: MySQL's counts, Redis's jobs, the mock's deliveries."""

    counts: dict[int, int]
    unqueued: list[int]  # pending rows with no job in Redis
    never_delivered: list[int]  # rows marked sent without a 2xx for their key
    stats: dict
    repeats: int
    repeated: dict[int, int]  # row -> deliveries, for rows delivered more than once
    explained: Counter  # repeats put down to each window
    unexplained: dict[int, tuple[int, int]]  # row -> (deliveries, deliveries the faults allow)
    trickled_keys: int  # keys with a 2xx answer trickled past the deadline
    foreign_keys: list[str]
    mismatched: list[int]  # rows whose phone got a different number of 2xx than their key
    consumer_kills: int
    window_kills: int


@dataclass
class Verdict:
    """What the table shows, and why the run passes or fails."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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

    def begin(self) -> None:
        self.server.client().config_set("busy-reply-threshold", BUSY_THRESHOLD_MS)
        self.thread = threading.Thread(target=self.keep_busy, name="redis-busy", daemon=True)
        super().begin()
        self.thread.start()
        self.answer = self.probe()
        self.say(f"Redis runs a script for {self.seconds:g} s; others get {self.answer or 'answers'}")

    def keep_busy(self) -> None:
        client = redis.Redis(port=self.server.port, socket_timeout=self.seconds + 10, socket_connect_timeout=2)
        try:
            client.eval(BUSY_SCRIPT, 0, self.seconds)
        except redis.RedisError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()

    def probe(self) -> str | None:
        """What another client gets once the script has run past the threshold."""
        client = self.server.client()
        deadline = time.monotonic() + BUSY_THRESHOLD_MS / 1000 + 1.0
        while time.monotonic() < deadline and self.thread.is_alive():
            try:
                client.ping()
            except redis.ResponseError as exc:
                if str(exc).startswith("BUSY"):
                    return "BUSY"
            time.sleep(0.05)
        return None

    def end(self) -> None:
        self.thread.join(self.seconds + 15)
        self.server.client().config_set("busy-reply-threshold", DEFAULT_BUSY_THRESHOLD_MS)
        super().end()
        self.say(f"Redis answers again after {self.held:.1f} s")

    def detail(self) -> str:
        return (
            f"a script ran {self.seconds:g} s, threshold {BUSY_THRESHOLD_MS} ms; "
            f"a probe got {self.answer or 'an answer'}"
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


class ChaosRun:
    def __init__(self, options: Options, workdir: Path):
        self.options = options
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.rng = random.Random(options.seed)
        self.redis = RedisServer(workdir, self.logs)
        self.mariadb = MariaDB(workdir, self.logs, DATABASE)
        self.campaign = Campaign(self.mariadb)
        self.mock = MockEndpoint(workdir, options.fail_rate, options.timeout_rate)
        self.roles = None
        self.windows = RepeatWindows()
        self.kills: list[Kill] = []
        self.outages: list[list] = []  # [what, start, end or None], in run seconds
        self.redis_restarts = 0
        self.redis_leased = 0
        self.mysql_restarts = 0
        self.mysql_stopped = False  # by the schedule, until its step ends
        self.mysql_down_for = 0.0
        self.refusal = RedisRefusal(self.redis, self.say, self.clock)
        self.busy = RedisBusy(self.redis, options.phase_seconds, self.say, self.clock)
        self.odd = OddAnswers(self.mock, options.phase_seconds, self.say, self.clock)
        self.trickle = TrickledAnswers(self.mock, self.say, self.clock)
        self.schedule = Schedule(self.steps(), self.clock)
        self.sent_before_outage: set[int] = set()
        self.counts = {PENDING: options.rows, SENT: 0, FAILED: 0}
        self.started = time.monotonic()
        self.started_roles_at = 0.0

    def clock(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        click.echo(f"[{self.clock():6.1f} s] {text}")

    # --- set-up ---------------------------------------------------------------

    def set_up(self) -> None:
        missing = [
            name
            for name, path in (
                ("redis-server", self.redis.binary),
                ("mariadbd", self.mariadb.server),
                ("mariadb-install-db", self.mariadb.install_db),
            )
            if not path
        ]
        if missing:
            raise SetupFailed(f"not installed: {', '.join(missing)} (apt-get install redis-server mariadb-server)")
        self.redis.start()
        self.mariadb.install()
        self.mariadb.start()
        wait_until(self.mariadb.answers, 60, "mariadbd accepting connections", self.mariadb.log)
        self.campaign.create(self.options.rows)
        self.mock.start()
        self.roles = Roles(self.role_environment(), self.logs, self.clock)
        self.say(
            f"{self.options.rows} rows; private Redis on :{self.redis.port}, MariaDB on :{self.mariadb.port}, "
            f"mock at {self.mock.url} ({self.options.fail_rate:.0%} 5xx, {self.options.timeout_rate:.0%} hangs)"
        )

    def held_faults(self) -> list[tuple[HeldFault, bool]]:
        """Each held fault in the order of the schedule, and whether it is on."""
        options = self.options
        return [
            (self.refusal, options.redis_refusals),
            (self.busy, options.redis_busy),
            (self.odd, options.odd_answers),
            (self.trickle, options.trickle),
        ]

    def steps(self) -> list[Step]:
        """The schedule: the Redis faults, then the endpoint's and MySQL's,
        each alone, so a repeat or a loss points at one."""
        on = {fault.name: enabled for fault, enabled in self.held_faults()}
        seconds = self.options.phase_seconds
        steps = [
            self.refusal.step(seconds),
            Step("Redis restart", self.restart_redis),
            self.busy.step(seconds),
            self.odd.step(seconds),
            Step("MySQL restart", self.stop_mysql, self.start_mysql, self.options.mysql_down_seconds),
            self.trickle.step(seconds),
        ]
        return [step for step in steps if on.get(step.name, True)]

    def role_environment(self) -> dict:
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        env.update(
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
            DATABASE_URL=self.mariadb.url,
            REDIS_URL=self.redis.url,
            KEY_PREFIX="",
            CAMPAIGN_TABLE=TABLE,
            PHONE_COLUMN="column1",
            STATUS_COLUMN="column3",
            WHATSAPP_URL=f"{self.mock.url}/test_camp",
            WHATSAPP_TIMEOUT=str(REQUEST_TIMEOUT),
            LEASE_SECONDS=str(LEASE_SECONDS),
            RETRY_DELAY=str(RETRY_DELAY),
            MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            CONCURRENCY=str(self.options.concurrency),
            BATCH_SIZE=str(BATCH_SIZE),
            POLL_INTERVAL=str(POLL_INTERVAL),
            HTTP_ENGINE=self.options.http_engine,
            BREAKER_COOLDOWN=str(BREAKER_COOLDOWN),
        )
        return env

    # --- the run ----------------------------------------------------------------

    def execute(self) -> bool:
        """Set up, run with chaos, settle, stop, and print the table. True when it passed."""
        self.set_up()
        for module in ROLES:
            self.roles.start(module)
        self.started_roles_at = self.clock()
        self.wreak_chaos()
        self.settle()
        wait_until(self.mariadb.answers, 60, "MySQL answering after its restart", self.mariadb.log)
        self.wait_for_roles_to_start()
        codes = self.roles.stop_all()
        elapsed = self.clock() - self.started_roles_at
        verdict = self.judge(self.tally(), codes, elapsed)
        print_verdict(verdict)
        return not verdict.failures

    def wreak_chaos(self) -> None:
        """Kill, and run the schedule's faults one after another, until every
        row is done (and every fault has run) or the time limit passes."""
        limit = self.options.time_limit
        next_kill = self.clock() + self.jitter()
        next_report = self.clock() + REPORT_EVERY
        while True:
            self.roles.supervise()
            self.read_counts()
            elapsed = self.clock() - self.started_roles_at
            progress = (self.counts[SENT] + self.counts[FAILED]) / max(self.options.rows, 1)
            self.schedule.advance(max(progress, elapsed / limit), quiet=not self.outage_open())
            if self.schedule.done() and not self.outage_open() and self.counts[PENDING] == 0:
                self.say("every row is done: no more chaos")
                return
            if elapsed >= limit:
                self.schedule.finish()
                self.say(f"time limit of {limit:g} s reached: no more chaos")
                return
            if self.clock() >= next_kill:
                self.kill_one()
                next_kill = self.clock() + self.jitter()
            if self.clock() >= next_report:
                self.report_progress()
                next_report = self.clock() + REPORT_EVERY
            time.sleep(TICK)

    def settle(self) -> None:
        """No more chaos: let the processes finish until nothing is pending, or
        nothing changed for SETTLE_QUIET seconds."""
        deadline = self.clock() + SETTLE_LIMIT
        last, changed_at = None, self.clock()
        while self.clock() < deadline:
            self.roles.supervise()
            self.read_counts()
            if self.outage_open():
                changed_at = self.clock()
            elif self.counts != last:
                last, changed_at = dict(self.counts), self.clock()
            if not self.outage_open() and self.counts[PENDING] == 0:
                return
            if self.clock() - changed_at >= SETTLE_QUIET:
                self.say(f"nothing changed for {SETTLE_QUIET:g} s; {self.counts[PENDING]} rows still pending")
                return
            time.sleep(TICK)
        self.say(f"still not settled after {SETTLE_LIMIT:g} s; {self.counts[PENDING]} rows pending")

    def wait_for_roles_to_start(self) -> None:
        """A role SIGTERMed while Python is still starting dies of the signal before
        its handler exists; that says nothing about the project, so the final
        stop waits until every role has been up a few seconds."""
        while not self.roles.all_up_for(ROLE_START_SECONDS):
            self.roles.supervise()
            time.sleep(TICK)

    def jitter(self) -> float:
        return self.options.kill_every * self.rng.uniform(0.5, 1.5)

    def read_counts(self) -> None:
        """Refresh the row counts; an answer from a restarted MySQL ends its outage."""
        if not self.mariadb.running():
            if self.mariadb.process is not None and not self.mysql_stopped:
                raise SetupFailed(f"mariadbd exited after its restart; see {self.mariadb.log}")
            return
        try:
            self.counts = self.campaign.counts()
        except Unreachable:
            return
        self.end_outage("MySQL")

    def report_progress(self) -> None:
        stats = self.mock.stats()
        self.say(
            f"sent {self.counts[SENT]}, failed {self.counts[FAILED]}, pending {self.counts[PENDING]}; "
            f"mock: {stats['requests']} requests, {stats['delivered']} delivered, "
            f"{stats['duplicates']} repeats, {stats['in_flight']} in flight"
        )

    # --- faults -------------------------------------------------------------------

    def kill_one(self) -> None:
        running = sorted(self.roles.running())
        if not running:
            return
        module = self.rng.choice(running)
        self.roles.kill(module, restart_after=self.rng.uniform(0, MAX_RESTART_PAUSE))
        kill = Kill(module)
        if module in CONSUMER_PARTITION:
            exposed = self.exposed_rows(CONSUMER_PARTITION[module])
            self.windows.consumer_killed(exposed)
            kill.exposed = len(exposed)
        self.kills.append(kill)
        detail = "" if kill.exposed is None else f" ({kill.exposed} rows delivered but not yet recorded)"
        self.say(f"SIGKILL {module}{detail}")

    def exposed_rows(self, partition: int) -> dict[int, int]:
        """Rows of the killed consumer's partition the endpoint took (2xx) that
        MySQL does not show as sent: each may be sent again. Row -> deliveries so far."""
        time.sleep(ANSWER_GRACE)
        delivered = {
            row_id: count
            for row_id, count in deliveries_by_row(self.mock.deliveries()).items()
            if row_id % 2 == partition
        }
        try:
            sent = self.campaign.ids(SENT, partition)
        except Unreachable:
            # MySQL is down: the rows sent before it went down are a subset of
            # those sent now, so this can only expose more rows, never fewer.
            sent = self.sent_before_outage
        return {row_id: count for row_id, count in delivered.items() if row_id not in sent}

    @staticmethod
    def queues(client: redis.Redis) -> list[JobQueue]:
        """The two partitions' queues, for their key names."""
        return [JobQueue(client, Partition(index, 2)) for index in (0, 1)]

    def restart_redis(self) -> None:
        """Kill Redis and start it again empty. Jobs leased at that moment lose
        their lease and are queued again from MySQL, so each may be sent again."""
        client = self.redis.client()
        # Claims are writes: pausing writes keeps any claim from slipping in
        # between this snapshot of the leases and the kill.
        client.client_pause(10_000, all=False)
        now_ms = int(time.time() * 1000)
        leased = {
            int(member)
            for queue in self.queues(client)
            for member in client.zrangebyscore(queue.due_key, f"({now_ms}", "+inf")
            if member.isdigit()
        }
        self.redis.kill()
        self.start_outage("Redis")
        self.say(f"Redis killed ({len(leased)} jobs leased or backing off); starting it again empty")
        time.sleep(REDIS_DOWN_SECONDS)
        self.redis.start()
        self.end_outage("Redis")
        self.windows.redis_restarted(leased)
        self.redis_restarts += 1
        self.redis_leased = len(leased)

    def stop_mysql(self) -> None:
        try:
            self.sent_before_outage = self.campaign.ids(SENT)
        except Unreachable:
            self.sent_before_outage = set()
        self.start_outage("MySQL")
        self.say("MySQL: SIGTERM")
        self.campaign.close()
        self.mysql_stopped = True
        self.mariadb.stop()
        self.mysql_restarts += 1
        self.say(f"MySQL stopped; down for {self.options.mysql_down_seconds:g} s")

    def start_mysql(self) -> None:
        """Start the stopped MySQL; its outage ends when it answers (read_counts)."""
        self.mysql_stopped = False
        self.mariadb.start()
        self.say("MySQL: starting again")

    def start_outage(self, what: str) -> None:
        self.outages.append([what, self.clock(), None])

    def end_outage(self, what: str) -> None:
        for outage in self.outages:
            if outage[0] == what and outage[2] is None:
                outage[2] = self.clock()
                if what == "MySQL":
                    self.mysql_down_for = outage[2] - outage[1]
                    self.say(f"MySQL answers again after {self.mysql_down_for:.1f} s")

    def outage_open(self) -> bool:
        return any(end is None for _, _, end in self.outages)

    # --- the verdict ----------------------------------------------------------------

    def tally(self) -> Findings:
        """What the run left behind, read once every process is stopped."""
        pending = sorted(self.campaign.ids(PENDING))
        client = self.redis.client()
        job_key = self.queues(client)[0].job_key
        pipe = client.pipeline(transaction=False)
        for row_id in pending:
            pipe.exists(job_key(row_id))
        deliveries = self.mock.deliveries()
        recipients = self.mock.recipients()
        trickled = deliveries_by_row(self.mock.trickled())
        self.windows.answers_trickled(trickled)
        self.trickle.answers, self.trickle.keys = sum(trickled.values()), len(trickled)
        by_row = deliveries_by_row(deliveries)
        repeated = {row_id: count for row_id, count in by_row.items() if count > 1}
        explained = Counter()
        for row_id, count in repeated.items():
            explained.update(self.windows.explain(row_id, count))
        consumer_kills = [kill for kill in self.kills if kill.exposed is not None]
        return Findings(
            counts=self.campaign.counts(),
            unqueued=[row_id for row_id, queued in zip(pending, pipe.execute()) if not queued],
            never_delivered=sorted(self.campaign.ids(SENT) - by_row.keys()),
            stats=self.mock.stats(),
            repeats=sum(count - 1 for count in deliveries.values()),
            repeated=repeated,
            explained=explained,
            unexplained={
                row_id: (count, self.windows.allowed(row_id))
                for row_id, count in repeated.items()
                if count > self.windows.allowed(row_id)
            },
            trickled_keys=len(trickled),
            foreign_keys=sorted(key for key in deliveries if row_of(key) is None),
            # A send carrying another row's key would show here: its phone's count and its key's differ.
            mismatched=sorted(
                row_id for row_id, count in by_row.items() if recipients.get(phone_of(row_id), 0) != count
            ),
            consumer_kills=len(consumer_kills),
            window_kills=sum(1 for kill in consumer_kills if kill.exposed),
        )

    def judge(self, found: Findings, codes: dict[str, int | None], elapsed: float) -> Verdict:
        """The table, and every reason the run fails."""
        verdict = Verdict()
        window_events = found.window_kills + self.redis_restarts
        # A cut answer is a window of one key.
        bound = window_events * (self.options.concurrency * 2 + BATCH_SIZE) + found.trickled_keys
        stats = found.stats
        verdict.lines = [
            ("rows", str(self.options.rows), ""),
            ("sent", str(found.counts[SENT]), ""),
            ("failed", str(found.counts[FAILED]), ""),
            ("still pending", str(found.counts[PENDING]), ""),
            (
                "lost",
                str(len(found.unqueued) + len(found.never_delivered)),
                f"pending with no job queued {len(found.unqueued)}, "
                f"marked sent but never delivered {len(found.never_delivered)}",
            ),
            (
                "sends seen by the mock",
                str(stats["delivered"]),
                f"{stats['requests']} requests, {stats['hung']} hung, {stats['unique']} keys",
            ),
            (
                "repeats by idempotency key",
                str(found.repeats),
                f"in {len(found.repeated)} keys, {len(found.unexplained)} unexplained; bound {bound} keys",
            ),
            (
                "repeats explained",
                str(sum(found.explained.values())),
                ", ".join(
                    f"{found.explained[reason]} by {reason}" for reason in (ANSWER_CUT, CONSUMER_KILL, REDIS_RESTART)
                ),
            ),
            (
                "kills",
                str(len(self.kills)),
                f"{found.consumer_kills} of consumers, {found.window_kills} in the repeat window",
            ),
            ("Redis restarts", str(self.redis_restarts), f"{self.redis_leased} jobs leased at the restart"),
            ("MySQL restarts", str(self.mysql_restarts), f"down {self.mysql_down_for:.1f} s"),
            *(fault_line(fault, enabled) for fault, enabled in self.held_faults()),
            ("elapsed seconds", f"{elapsed:.1f}", ""),
        ]
        not_begun = self.schedule.not_begun()
        if not_begun:
            verdict.notes.append(f"the chaos stopped before these faults began: {', '.join(not_begun)}")
        if found.repeated and not found.mismatched:
            sample = ", ".join(stats["duplicate_keys"][:5])
            verdict.notes.append(f"every repeat carried its row's own Idempotency-Key; the mock's sample: {sample}")

        fail = verdict.failures.append
        if found.unqueued:
            fail(f"{len(found.unqueued)} pending rows have no job queued (e.g. ids {found.unqueued[:5]})")
        if found.never_delivered:
            fail(
                f"{len(found.never_delivered)} rows are marked sent but the endpoint never took them "
                f"(e.g. ids {found.never_delivered[:5]})"
            )
        if found.unexplained:
            sample = ", ".join(
                f"{TABLE}:{row_id} x{count} (allowed {allowed})"
                for row_id, (count, allowed) in sorted(found.unexplained.items())[:5]
            )
            fail(
                f"{len(found.unexplained)} keys were sent again with no kill, Redis restart or cut answer "
                f"to explain it: {sample}"
            )
        if len(found.repeated) > bound:
            fail(
                f"{len(found.repeated)} repeated keys, more than the {bound} that {window_events} window events "
                f"can explain"
            )
        if found.counts[PENDING]:
            fail(f"{found.counts[PENDING]} rows still pending after settling")
        if found.foreign_keys:
            fail(
                f"{len(found.foreign_keys)} sends without an Idempotency-Key of the form {TABLE}:<id> "
                f"(e.g. {found.foreign_keys[:3]})"
            )
        if found.mismatched:
            fail(
                f"{len(found.mismatched)} rows' phones got a different number of messages than their "
                f"Idempotency-Key shows (e.g. ids {found.mismatched[:5]})"
            )
        for fault, _enabled in self.held_faults():
            if fault.began is not None and fault.problem():
                fail(fault.problem())
        for exit_ in self.roles.exits:
            fail(f"{exit_.module} exited {exit_.code} on its own at {exit_.at:.1f} s")
        for module, code in codes.items():
            if code is None:
                fail(f"{module} did not exit within {STOP_GRACE:g} s of SIGTERM")
            elif code != 0:
                fail(f"{module} exited {code} on SIGTERM (expected 0)")
        for module, count in self.roles.tracebacks().items():
            if count:
                fail(f"{count} tracebacks in the log of {module}")
        return verdict

    def clean_up(self) -> None:
        """Stop everything this run started; safe to call at any point."""
        if self.roles is not None:
            self.roles.kill_all()
        stop_process(self.mock.process, 5)
        if self.redis.running():
            self.redis.kill()
        self.campaign.close()
        stop_process(self.mariadb.process, 30)


def fault_line(fault: HeldFault, enabled: bool) -> tuple[str, str, str]:
    """The table's line for a held fault: how often it ran, and what it did."""
    if not enabled:
        return fault.name, "0", "off"
    if fault.began is None:
        return fault.name, "0", "never began: the chaos stopped first"
    return fault.name, "1", fault.detail()


def print_verdict(verdict: Verdict) -> None:
    width = max(len(name) for name, _, _ in verdict.lines)
    values = max(len(value) for _, value, _ in verdict.lines)
    click.echo("")
    for name, value, detail in verdict.lines:
        click.echo(f"  {name:<{width}}  {value:>{values}}  {detail}".rstrip())
    click.echo("")
    for note in verdict.notes:
        click.echo(f"chaos: {note}")
    for failure in verdict.failures:
        click.echo(f"chaos: FAIL: {failure}")
    if not verdict.failures:
        click.echo("chaos: PASS")


def interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--rows", type=click.IntRange(min=1), default=20_000, show_default=True, help="Pending rows to seed and send."
)
@click.option(
    "--kill-every",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds between SIGKILLs of a random process (jittered 0.5x to 1.5x).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Stop the chaos after this many seconds even if rows are still pending.",
)
@click.option(
    "--mysql-down-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="How long MySQL stays down when it is restarted.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.10,
    show_default=True,
    help="Share of sends the mock answers with HTTP 500.",
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help=f"Share of sends the mock never answers (it hangs {HANG_SECONDS:g} s; "
    f"the consumers time out after {REQUEST_TIMEOUT:g} s).",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="Sends in flight per consumer."
)
@click.option(
    "--http-engine",
    type=click.Choice(sorted(ENGINES)),
    default="requests",
    show_default=True,
    help="HTTP_ENGINE of the consumers.",
)
@click.option(
    "--redis-refusals/--no-redis-refusals",
    default=True,
    show_default=True,
    help="Make Redis refuse every write (maxmemory 1, noeviction) for --phase-seconds.",
)
@click.option(
    "--redis-busy/--no-redis-busy",
    default=True,
    show_default=True,
    help="Keep Redis busy in a script, so it answers BUSY, for --phase-seconds.",
)
@click.option(
    "--odd-answers/--no-odd-answers",
    default=True,
    show_default=True,
    help=f"Have the mock answer odd 2xx bodies and {ODD_FAIL_STATUS}s with odd Retry-After texts for --phase-seconds.",
)
@click.option(
    "--trickle/--no-trickle",
    default=True,
    show_default=True,
    help=f"Have the mock trickle every answer over {TRICKLE_SECONDS:g} s, past the request "
    f"deadline, for --phase-seconds.",
)
@click.option(
    "--phase-seconds",
    type=click.FloatRange(0.5, LEASE_SECONDS / 2),
    default=3.0,
    show_default=True,
    help="How long each of those faults is held.",
)
@click.option("--seed", type=int, default=None, help="Seed for the run's random choices (printed when not given).")
@click.option("--keep", is_flag=True, help="Keep the run's directory (logs, MariaDB data) even when it passes.")
def main(**options):
    """Prove the delivery guarantee under faults.

    Runs the four processes on private Redis and MariaDB servers against the
    mock endpoint, which answers 5xx or hangs for some sends. Every few seconds
    a random process is SIGKILLed and restarted, and these faults run one
    after another, spread over the run: Redis refuses writes, restarts empty,
    answers BUSY; the mock answers odd bodies and Retry-Afters; MySQL restarts;
    the mock trickles its answers past the request deadline. Then one table:
    rows, sent, failed, still pending, lost, sends seen by the mock, repeats by
    idempotency key and what explains them, kills, and each fault.

    \b
    Lost: once every process is stopped, a pending row with no job in Redis,
    or a row marked sent that the endpoint never took (no 2xx for its key).

    \b
    A repeat is explained only by a kill of a consumer while the endpoint had
    taken rows of its partition that MySQL did not yet show as sent (a kill
    "in the repeat window"), by the Redis restart for the jobs then leased, or
    by an answer the mock trickled past the deadline (it took the message, the
    consumer saw a timeout and retried with the same key). Exit 0 when
    nothing is lost, every repeat is explained, every fault took and no
    process exited on its own; 1 otherwise; 2 when the services could not be
    set up; 130 when interrupted.
    """
    options = Options(**options)
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    # Set explicitly: a launcher may have left SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    run = ChaosRun(options, workdir)
    click.echo(f"chaos: seed {options.seed} (--seed {options.seed} repeats these choices), logs in {workdir}/logs")
    code = 1
    try:
        code = 0 if run.execute() else 1
    except SetupFailed as exc:
        click.echo(f"chaos: error: {exc}", err=True)
        code = 2
    except KeyboardInterrupt:
        click.echo("chaos: interrupted; stopping everything", err=True)
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.clean_up()
        if options.keep or code in (1, 2):
            click.echo(f"chaos: kept {workdir} (process logs in {workdir}/logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
