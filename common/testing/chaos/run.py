"""The run itself: set up the private services and the four processes, kill
and fault them until every row is done (or the time limit passes), let them
settle, stop them, and judge what is left. It also causes the faults that are
not held (a kill, the Redis restart, the MySQL restart) and keeps the record
of each that the verdict reads."""

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import click

from common.store.campaign import FAILED, PENDING, SENT
from common.testing.chaos.campaign import Campaign, Unreachable, deliveries_by_row, queues
from common.testing.chaos.config import (
    ANSWER_GRACE,
    BATCH_SIZE,
    BREAKER_COOLDOWN,
    CONSUMER_PARTITION,
    DATABASE,
    INHERITED,
    LEASE_SECONDS,
    MAX_ATTEMPTS,
    MAX_RESTART_PAUSE,
    POLL_INTERVAL,
    REDIS_DOWN_SECONDS,
    REPORT_EVERY,
    REQUEST_TIMEOUT,
    RETRY_DELAY,
    ROLE_START_SECONDS,
    ROLES,
    SETTLE_LIMIT,
    SETTLE_QUIET,
    TABLE,
    TICK,
    Options,
)
from common.testing.chaos.endpoint import MockEndpoint
from common.testing.chaos.faults import HeldFault, OddAnswers, RedisBusy, RedisRefusal, TrickledAnswers
from common.testing.chaos.repeats import RepeatWindows
from common.testing.chaos.roles import Kill, Roles
from common.testing.chaos.schedule import Schedule, Step
from common.testing.chaos.verdict import judge, print_verdict, tally
from common.testing.processes import SetupFailed, stop_process, wait_until
from common.testing.sentinel import SentinelGroup
from common.testing.services import MariaDB, RedisServer


@dataclass
class FailoverRecord:
    """What the --failover step did, for the verdict."""

    count: int = 0
    promoted_after: float = 0.0  # seconds from the kill until the replica was primary
    leased: int = 0  # jobs leased at the kill

    def detail(self) -> str:
        if not self.count:
            return "did not happen"
        return f"replica primary {self.promoted_after:.1f} s after the kill; {self.leased} jobs leased then"


class ChaosRun:
    """One run: its services, its processes, its faults and what they did."""

    def __init__(self, options: Options, workdir: Path):
        self.options = options
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.rng = random.Random(options.seed)
        # With --failover, Redis is a Sentinel group and `redis` its primary of the moment.
        self.group = SentinelGroup(workdir / "redis", self.logs) if options.failover else None
        self.redis = self.group.primary if self.group else RedisServer(workdir, self.logs)
        self.failover = FailoverRecord()
        self.mariadb = MariaDB(workdir, self.logs, DATABASE)
        self.campaign = Campaign(self.mariadb)
        self.mock = MockEndpoint(workdir, options.fail_rate, options.timeout_rate)
        self._roles: Roles | None = None  # set_up starts them: their environment needs the mock's URL
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
        if self.group:
            self.group.start()
        else:
            self.redis.start()
        self.mariadb.install()
        self.mariadb.start()
        wait_until(self.mariadb.answers, 60, "mariadbd accepting connections", self.mariadb.log)
        self.campaign.create(self.options.rows)
        self.mock.start()
        self._roles = Roles(self.role_environment(), self.logs, self.clock)
        redis = f"Sentinel group {self.group.url}" if self.group else f"private Redis on :{self.redis.port}"
        self.say(
            f"{self.options.rows} rows; {redis}, MariaDB on :{self.mariadb.port}, "
            f"mock at {self.mock.url} ({self.options.fail_rate:.0%} 5xx, {self.options.timeout_rate:.0%} hangs)"
        )

    @property
    def roles(self) -> Roles:
        """The four processes; they exist once set_up has run."""
        if self._roles is None:
            raise RuntimeError("the roles exist only after set_up()")
        return self._roles

    def held_faults(self) -> list[tuple[HeldFault, bool]]:
        """Each held fault in the order of the schedule, and whether it is on."""
        options = self.options
        return [
            (self.refusal, options.redis_refusals and not options.failover),
            (self.busy, options.redis_busy),
            (self.odd, options.odd_answers),
            (self.trickle, options.trickle),
        ]

    def steps(self) -> list[Step]:
        """The schedule: the Redis faults, then the endpoint's and MySQL's,
        each alone, so a repeat or a loss points at one."""
        on = {fault.name: enabled for fault, enabled in self.held_faults()}
        seconds = self.options.phase_seconds
        # Under Sentinel the primary is killed once instead: a refusal would
        # make the sentinels reconfigure it, a restart would be a failover.
        redis_steps = (
            [Step("Redis failover", self.fail_over)]
            if self.group
            else [self.refusal.step(seconds), Step("Redis restart", self.restart_redis)]
        )
        steps = [
            *redis_steps,
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
            REDIS_URL=self.group.url if self.group else self.redis.url,
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
        verdict = judge(self, tally(self), codes, elapsed)
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

    def restart_redis(self) -> None:
        """Kill Redis and start it again empty. Jobs leased at that moment lose
        their lease and are queued again from MySQL, so each may be sent again."""
        leased = self.leased_jobs()
        self.redis.kill()
        self.start_outage("Redis")
        self.say(f"Redis killed ({len(leased)} jobs leased or backing off); starting it again empty")
        time.sleep(REDIS_DOWN_SECONDS)
        self.redis.start()
        self.end_outage("Redis")
        self.windows.redis_restarted(leased)
        self.redis_restarts += 1
        self.redis_leased = len(leased)

    def leased_jobs(self) -> set[int]:
        """Jobs leased or backing off now, with writes paused so no claim
        slips in between this snapshot and what comes next."""
        client = self.redis.client()
        client.client_pause(10_000, all=False)
        now_ms = int(time.time() * 1000)
        return {
            int(member)
            for queue in queues(client)
            for member in client.zrangebyscore(queue.due_key, f"({now_ms}", "+inf")
            if member.isdigit()
        }

    def fail_over(self) -> None:
        """SIGKILL the primary; the sentinels promote the replica. Writes the
        replica had not received are lost with it: a lease among them lets
        its job be claimed again, so each job leased at the kill may repeat."""
        assert self.group is not None
        leased = self.leased_jobs()
        killed_at = self.clock()
        self.group.kill_primary()
        self.start_outage("Redis")
        self.say(f"Redis primary SIGKILLed ({len(leased)} jobs leased or backing off); waiting for the failover")
        wait_until(self.group.promoted, 60, "the sentinels promoting the replica", self.group.log)
        self.end_outage("Redis")
        self.redis = self.group.replica
        for fault in (self.refusal, self.busy):
            fault.server = self.redis
        self.windows.redis_failed_over(leased)
        self.failover = FailoverRecord(1, self.clock() - killed_at, len(leased))
        self.say(f"the replica is primary after {self.failover.promoted_after:.1f} s")

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

    def clean_up(self) -> None:
        """Stop everything this run started; safe to call at any point."""
        if self._roles is not None:
            self._roles.kill_all()
        stop_process(self.mock.process, 5)
        if self.group:
            self.group.stop()
        elif self.redis.running():
            self.redis.kill()
        self.campaign.close()
        stop_process(self.mariadb.process, 30)
