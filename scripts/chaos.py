"""The chaos run: the four processes send a campaign to the mock endpoint while
it fails and hangs some sends, a random process is SIGKILLed every few
seconds, Redis restarts empty once and MySQL restarts once. At the end one
table says whether anything was lost or sent again without a reason.

The run owns its services: a private redis-server without persistence (so a
restart comes back empty) and a private MariaDB in a temporary directory, both
on free ports, so stopping them harms nothing else. Run it with
`scripts/chaos`; `--help` lists the knobs.

A repeat has a reason (README, "The delivery guarantee") in two cases only:
  * a consumer was SIGKILLed after the endpoint answered 2xx for rows of its
    partition that MySQL did not yet show as sent: those rows are "exposed"
    and each may be sent once more;
  * Redis restarted empty while jobs were leased: each may be sent once more.
Any other repeat, a pending row with nothing queued, or a row marked sent that
the endpoint never took fails the run.
"""

import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import click
import pymysql
import redis
import requests

from common.config import Partition
from common.db import FAILED, PENDING, SENT
from common.errors import EXIT_UNAVAILABLE
from common.http_engines import ENGINES
from common.jobs import JobQueue

ROOT = Path(__file__).resolve().parent.parent
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
# Variables the roles need from this environment; everything else they get is
# set here, so nothing in .env can point them at a real campaign.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class SetupFailed(Exception):
    """A service of the run could not be started; the message says which and where its log is."""


def find_server(name: str) -> str | None:
    """A server binary; they live in sbin, which is not on a normal user's PATH."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = Path(directory, name)
        if os.access(path, os.X_OK):
            return str(path)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent() -> None:
    """Runs in each child before exec: if this script dies, even by SIGKILL (a
    test timeout), the child gets SIGKILL too, so no private server is left
    running on a random port."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a child in its own session (a Ctrl-C reaches only this script, which
    then stops everything in order), with its output appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent if sys.platform == "linux" else None)


def stop_process(process: subprocess.Popen | None, grace: float, signalled: bool = False) -> int | None:
    """SIGTERM (unless `signalled` already), then SIGKILL after `grace` seconds.
    Returns the exit code, or None when the process had to be killed."""
    if process is None:
        return None
    if process.poll() is not None:
        return process.returncode
    if not signalled:
        process.terminate()
    try:
        return process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def wait_until(condition, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SetupFailed(f"{what} did not happen within {timeout:g} s; see {log}")
        time.sleep(0.1)


class RedisServer:
    """A private redis-server without persistence: killed and started again, it is empty."""

    def __init__(self, workdir: Path):
        self.binary = find_server("redis-server")
        self.workdir = workdir
        self.log = workdir / "logs" / "redis-server.log"
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process = spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(self.workdir)], self.log)
        wait_until(self.answers, 10, "redis-server answering", self.log)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class MariaDB:
    """A private MariaDB whose data lives in the run's directory. Its root has no
    password and it listens on 127.0.0.1 only, so that is safe here."""

    def __init__(self, workdir: Path):
        self.server = find_server("mariadbd") or find_server("mysqld")
        self.install_db = find_server("mariadb-install-db") or find_server("mysql_install_db")
        self.workdir = workdir
        self.datadir = workdir / "mysql-data"
        self.log = workdir / "logs" / "mariadbd.log"
        self.port = free_port()
        # mariadbd refuses to run as root unless told to.
        self.user_option = ["--user=root"] if os.geteuid() == 0 else []
        self.process = None

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def install(self) -> None:
        with open(self.workdir / "logs" / "mariadb-install-db.log", "wb") as log:
            done = subprocess.run([self.install_db, "--no-defaults", f"--datadir={self.datadir}",
                                   "--auth-root-authentication-method=normal", "--skip-test-db",
                                   *self.user_option], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            raise SetupFailed(f"mariadb-install-db failed; see {log.name}")

    def start(self) -> None:
        """Start the server; `connect` works once it is ready."""
        # Its own socket and pid file: the defaults belong to the machine's server.
        self.process = spawn([self.server, "--no-defaults", *self.user_option, f"--datadir={self.datadir}",
                              f"--socket={self.workdir / 'mysql.sock'}", f"--pid-file={self.workdir / 'mysql.pid'}",
                              f"--port={self.port}", "--bind-address=127.0.0.1", f"--log-error={self.log}"],
                             self.log)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self, database: str | None = DATABASE):
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=database,
                               autocommit=True, connect_timeout=2, read_timeout=30, write_timeout=30)

    def answers(self) -> bool:
        try:
            self.connect(None).close()
            return True
        except pymysql.MySQLError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waiting until the server has exited."""
        if stop_process(self.process, 60) is None:
            raise SetupFailed(f"mariadbd did not stop within 60 s of SIGTERM; see {self.log}")


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
                self.connection = self.mariadb.connect()
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
            schema = "".join(line for line in (ROOT / "schema.sql").read_text().splitlines(keepends=True)
                             if not line.lstrip().startswith("--"))
            for statement in schema.split(";"):
                if statement.strip():
                    cursor.execute(statement)
            # The phone of row N is phone_of(N), so the mock's count per phone checks its count per key.
            cursor.execute(f"INSERT INTO {TABLE} (id, column1, column3)"
                           f" SELECT seq, CONCAT('62812', LPAD(seq, 8, '0')), {PENDING} FROM seq_1_to_{rows}")

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
        self.argv = [sys.executable, "-m", "common.mock_whatsapp", "--port", "0", "--fail-rate", str(fail_rate),
                     "--timeout-rate", str(timeout_rate), "--hang-seconds", str(HANG_SECONDS)]
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
    """A role that ended without being killed by the run."""

    module: str
    code: int
    at: float
    expected: bool  # exit 3 while MySQL or Redis was down: refused to start, as documented


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
        return all(role.process is not None and role.process.poll() is None and now - role.started_at >= seconds
                   for role in self.roles.values())

    def kill(self, module: str, restart_after: float) -> None:
        """SIGKILL, wait until it is gone, and restart it after `restart_after` seconds."""
        role = self.roles[module]
        role.process.kill()
        role.process.wait()
        self.note(module, "SIGKILL")
        role.process, role.restart_at = None, self.clock() + restart_after

    def supervise(self, service_was_down) -> None:
        """Notice processes that exited on their own and (re)start what is due.
        `service_was_down(since, until)` tells whether MySQL or Redis was down then."""
        now = self.clock()
        for module, role in self.roles.items():
            if role.process is not None and role.process.poll() is not None:
                code = role.process.returncode
                expected = code == EXIT_UNAVAILABLE and service_was_down(role.started_at, now)
                self.exits.append(Exit(module, code, now, expected))
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
        return {m: stop_process(role.process, max(deadline - time.monotonic(), 0.1), signalled=True)
                for m, role in self.roles.items() if role.process is not None}

    def kill_all(self) -> None:
        for role in self.roles.values():
            role.restart_at = None
            if role.process is not None and role.process.poll() is None:
                role.process.kill()
                role.process.wait()

    def tracebacks(self) -> dict[str, int]:
        return {m: self.log_path(m).read_text(errors="replace").count("Traceback") for m in ROLES
                if self.log_path(m).exists()}


class RepeatWindows:
    """Which rows may be sent again, and how often, because of the run's faults.

    A row exposed by kills at k different delivery counts may be delivered k
    more times (two kills with no send in between expose it once); each Redis
    restart that found it leased allows one more.
    """

    def __init__(self):
        self.kill_counts: dict[int, set[int]] = defaultdict(set)
        self.redis_leased: Counter = Counter()

    def consumer_killed(self, exposed: dict[int, int]) -> None:
        for row_id, count in exposed.items():
            self.kill_counts[row_id].add(count)

    def redis_restarted(self, leased: set[int]) -> None:
        self.redis_leased.update(leased)

    def allowed(self, row_id: int) -> int:
        return 1 + len(self.kill_counts.get(row_id, ())) + self.redis_leased.get(row_id, 0)


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
    seed: int | None
    keep: bool


@dataclass
class Findings:
    """The end state: MySQL's counts, Redis's jobs, the mock's deliveries."""

    counts: dict[int, int]
    unqueued: list[int]  # pending rows with no job in Redis
    never_delivered: list[int]  # rows marked sent without a 2xx for their key
    stats: dict
    repeats: int
    repeated: dict[int, int]  # row -> deliveries, for rows delivered more than once
    unexplained: dict[int, tuple[int, int]]  # row -> (deliveries, deliveries the faults allow)
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


class ChaosRun:
    def __init__(self, options: Options, workdir: Path):
        self.options = options
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.rng = random.Random(options.seed)
        self.redis = RedisServer(workdir)
        self.mariadb = MariaDB(workdir)
        self.campaign = Campaign(self.mariadb)
        self.mock = MockEndpoint(workdir, options.fail_rate, options.timeout_rate)
        self.roles = None
        self.windows = RepeatWindows()
        self.kills: list[Kill] = []
        self.outages: list[list] = []  # [what, start, end or None], in run seconds
        self.redis_restarts = 0
        self.redis_leased = 0
        self.mysql_restarts = 0
        self.mysql_back_at = None  # when a stopped MySQL is started again
        self.mysql_down_for = 0.0
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
        missing = [name for name, path in (("redis-server", self.redis.binary), ("mariadbd", self.mariadb.server),
                                           ("mariadb-install-db", self.mariadb.install_db)) if not path]
        if missing:
            raise SetupFailed(f"not installed: {', '.join(missing)} (apt-get install redis-server mariadb-server)")
        self.redis.start()
        self.mariadb.install()
        self.mariadb.start()
        wait_until(self.mariadb.answers, 60, "mariadbd accepting connections", self.mariadb.log)
        self.campaign.create(self.options.rows)
        self.mock.start()
        self.roles = Roles(self.role_environment(), self.logs, self.clock)
        self.say(f"{self.options.rows} rows; private Redis on :{self.redis.port}, MariaDB on :{self.mariadb.port}, "
                 f"mock at {self.mock.url} ({self.options.fail_rate:.0%} 5xx, {self.options.timeout_rate:.0%} hangs)")

    def role_environment(self) -> dict:
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        env.update(
            PYTHONUNBUFFERED="1", LOG_LEVEL="INFO",
            DATABASE_URL=self.mariadb.url, REDIS_URL=self.redis.url, KEY_PREFIX="",
            CAMPAIGN_TABLE=TABLE, PHONE_COLUMN="column1", STATUS_COLUMN="column3",
            WHATSAPP_URL=f"{self.mock.url}/test_camp", WHATSAPP_TIMEOUT=str(REQUEST_TIMEOUT),
            LEASE_SECONDS=str(LEASE_SECONDS), RETRY_DELAY=str(RETRY_DELAY), MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            CONCURRENCY=str(self.options.concurrency), BATCH_SIZE=str(BATCH_SIZE),
            POLL_INTERVAL=str(POLL_INTERVAL), HTTP_ENGINE=self.options.http_engine,
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
        """Kill, restart Redis at a third of the way, MySQL at two thirds, until
        every row is done (and both restarts happened) or the time limit passes."""
        limit = self.options.time_limit
        next_kill = self.clock() + self.jitter()
        next_report = self.clock() + REPORT_EVERY
        while True:
            self.roles.supervise(self.service_was_down)
            self.bring_mysql_back()
            self.read_counts()
            elapsed = self.clock() - self.started_roles_at
            progress = (self.counts[SENT] + self.counts[FAILED]) / max(self.options.rows, 1)
            if not self.redis_restarts and (progress >= 1 / 3 or elapsed >= limit / 3):
                self.restart_redis()
            elif self.redis_restarts and not self.mysql_restarts and (progress >= 2 / 3 or elapsed >= 2 * limit / 3):
                self.stop_mysql()
            restarts_done = self.redis_restarts and self.mysql_restarts and self.mysql_back_at is None
            if restarts_done and not self.outage_open() and self.counts[PENDING] == 0:
                self.say("every row is done: no more chaos")
                return
            if elapsed >= limit:
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
        if self.mysql_back_at is not None:
            self.mysql_back_at = self.clock()
        deadline = self.clock() + SETTLE_LIMIT
        last, changed_at = None, self.clock()
        while self.clock() < deadline:
            self.roles.supervise(self.service_was_down)
            self.bring_mysql_back()
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
            self.roles.supervise(self.service_was_down)
            time.sleep(TICK)

    def jitter(self) -> float:
        return self.options.kill_every * self.rng.uniform(0.5, 1.5)

    def read_counts(self) -> None:
        """Refresh the row counts; an answer from a restarted MySQL ends its outage."""
        if not self.mariadb.running():
            if self.mariadb.process is not None and self.mysql_back_at is None:
                raise SetupFailed(f"mariadbd exited after its restart; see {self.mariadb.log}")
            return
        try:
            self.counts = self.campaign.counts()
        except Unreachable:
            return
        self.end_outage("MySQL")

    def report_progress(self) -> None:
        stats = self.mock.stats()
        self.say(f"sent {self.counts[SENT]}, failed {self.counts[FAILED]}, pending {self.counts[PENDING]}; "
                 f"mock: {stats['requests']} requests, {stats['delivered']} delivered, "
                 f"{stats['duplicates']} repeats, {stats['in_flight']} in flight")

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
        delivered = {row_id: count for row_id, count in deliveries_by_row(self.mock.deliveries()).items()
                     if row_id % 2 == partition}
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
        leased = {int(member) for queue in self.queues(client)
                  for member in client.zrangebyscore(queue.due_key, f"({now_ms}", "+inf") if member.isdigit()}
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
        self.mariadb.stop()
        self.mysql_back_at = self.clock() + self.options.mysql_down_seconds
        self.mysql_restarts += 1
        self.say(f"MySQL stopped; down for {self.options.mysql_down_seconds:g} s")

    def bring_mysql_back(self) -> None:
        if self.mysql_back_at is not None and self.clock() >= self.mysql_back_at:
            self.mysql_back_at = None
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

    def service_was_down(self, since: float, until: float) -> bool:
        """Whether MySQL or Redis was down at some time from `since` to `until`,
        with a little slack for a start-up check that began just before."""
        slack = 2.0
        return any(start <= until and (end is None or end + slack >= since) for _, start, end in self.outages)

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
        by_row = deliveries_by_row(deliveries)
        repeated = {row_id: count for row_id, count in by_row.items() if count > 1}
        consumer_kills = [kill for kill in self.kills if kill.exposed is not None]
        return Findings(
            counts=self.campaign.counts(),
            unqueued=[row_id for row_id, queued in zip(pending, pipe.execute()) if not queued],
            never_delivered=sorted(self.campaign.ids(SENT) - by_row.keys()),
            stats=self.mock.stats(),
            repeats=sum(count - 1 for count in deliveries.values()),
            repeated=repeated,
            unexplained={row_id: (count, self.windows.allowed(row_id)) for row_id, count in repeated.items()
                         if count > self.windows.allowed(row_id)},
            foreign_keys=sorted(key for key in deliveries if row_of(key) is None),
            # A send carrying another row's key would show here: its phone's count and its key's differ.
            mismatched=sorted(row_id for row_id, count in by_row.items()
                              if recipients.get(phone_of(row_id), 0) != count),
            consumer_kills=len(consumer_kills),
            window_kills=sum(1 for kill in consumer_kills if kill.exposed),
        )

    def judge(self, found: Findings, codes: dict[str, int | None], elapsed: float) -> Verdict:
        """The table, and every reason the run fails."""
        verdict = Verdict()
        window_events = found.window_kills + self.redis_restarts
        bound = window_events * (self.options.concurrency * 2 + BATCH_SIZE)
        stats = found.stats
        verdict.lines = [
            ("rows", str(self.options.rows), ""),
            ("sent", str(found.counts[SENT]), ""),
            ("failed", str(found.counts[FAILED]), ""),
            ("still pending", str(found.counts[PENDING]), ""),
            ("lost", str(len(found.unqueued) + len(found.never_delivered)),
             f"pending with no job queued {len(found.unqueued)}, "
             f"marked sent but never delivered {len(found.never_delivered)}"),
            ("sends seen by the mock", str(stats["delivered"]),
             f"{stats['requests']} requests, {stats['hung']} hung, {stats['unique']} keys"),
            ("repeats by idempotency key", str(found.repeats),
             f"in {len(found.repeated)} keys, {len(found.unexplained)} unexplained; bound {bound} keys"),
            ("kills", str(len(self.kills)),
             f"{found.consumer_kills} of consumers, {found.window_kills} in the repeat window"),
            ("Redis restarts", str(self.redis_restarts), f"{self.redis_leased} jobs leased at the restart"),
            ("MySQL restarts", str(self.mysql_restarts), f"down {self.mysql_down_for:.1f} s"),
            ("elapsed seconds", f"{elapsed:.1f}", ""),
        ]
        if found.repeated and not found.mismatched:
            sample = ", ".join(stats["duplicate_keys"][:5])
            verdict.notes.append(f"every repeat carried its row's own Idempotency-Key; the mock's sample: {sample}")
        expected_exits = sum(1 for e in self.roles.exits if e.expected)
        if expected_exits:
            verdict.notes.append(f"{expected_exits} starts refused with exit 3 while MySQL or Redis was down")

        fail = verdict.failures.append
        if found.unqueued:
            fail(f"{len(found.unqueued)} pending rows have no job queued (e.g. ids {found.unqueued[:5]})")
        if found.never_delivered:
            fail(f"{len(found.never_delivered)} rows are marked sent but the endpoint never took them "
                 f"(e.g. ids {found.never_delivered[:5]})")
        if found.unexplained:
            sample = ", ".join(f"{TABLE}:{row_id} x{count} (allowed {allowed})"
                               for row_id, (count, allowed) in sorted(found.unexplained.items())[:5])
            fail(f"{len(found.unexplained)} keys were sent again with no kill or Redis restart to explain it: {sample}")
        if len(found.repeated) > bound:
            fail(f"{len(found.repeated)} repeated keys, more than the {bound} that {window_events} window events "
                 f"can explain")
        if found.counts[PENDING]:
            fail(f"{found.counts[PENDING]} rows still pending after settling")
        if found.foreign_keys:
            fail(f"{len(found.foreign_keys)} sends without an Idempotency-Key of the form {TABLE}:<id> "
                 f"(e.g. {found.foreign_keys[:3]})")
        if found.mismatched:
            fail(f"{len(found.mismatched)} rows' phones got a different number of messages than their "
                 f"Idempotency-Key shows (e.g. ids {found.mismatched[:5]})")
        for exit_ in self.roles.exits:
            if not exit_.expected:
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
        if self.redis.process is not None and self.redis.process.poll() is None:
            self.redis.kill()
        self.campaign.close()
        stop_process(self.mariadb.process, 30)


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
@click.option("--rows", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Pending rows to seed and send.")
@click.option("--kill-every", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds between SIGKILLs of a random process (jittered 0.5x to 1.5x).")
@click.option("--time-limit", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Stop the chaos after this many seconds even if rows are still pending.")
@click.option("--mysql-down-seconds", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long MySQL stays down when it is restarted.")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="Share of sends the mock answers with HTTP 500.")
@click.option("--timeout-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help=f"Share of sends the mock never answers (it hangs {HANG_SECONDS:g} s; "
                   f"the consumers time out after {REQUEST_TIMEOUT:g} s).")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Sends in flight per consumer.")
@click.option("--http-engine", type=click.Choice(sorted(ENGINES)), default="requests",
              show_default=True, help="HTTP_ENGINE of the consumers.")
@click.option("--seed", type=int, default=None, help="Seed for the run's random choices (printed when not given).")
@click.option("--keep", is_flag=True, help="Keep the run's directory (logs, MariaDB data) even when it passes.")
def main(**options):
    """Prove the delivery guarantee under faults.

    Runs the four processes on private Redis and MariaDB servers against the
    mock endpoint, which answers 5xx or hangs for some sends. Every few seconds
    a random process is SIGKILLed and restarted; Redis restarts empty once (a
    third of the way) and MySQL restarts once (two thirds). Then one table:
    rows, sent, failed, still pending, lost, sends seen by the mock, repeats by
    idempotency key, and kills.

    \b
    Lost: once every process is stopped, a pending row with no job in Redis,
    or a row marked sent that the endpoint never took (no 2xx for its key).

    \b
    A repeat is explained only by a kill of a consumer while the endpoint had
    taken rows of its partition that MySQL did not yet show as sent (a kill
    "in the repeat window"), or by the Redis restart for the jobs then leased.
    Exit 0 when nothing is lost and every repeat is explained; 1 otherwise;
    2 when the services could not be set up; 130 when interrupted.
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
