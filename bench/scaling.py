"""The scaling checks: a poll must not cost more because of work already done
or of other data sharing the services, and a long queue must not cost memory.

(a) one producer poll round (odd and even) over N pending rows, without and
    with a million processed rows before them;
(b) one consumer claim plus its "still pending?" query, without and with a
    million unrelated keys in the same Redis database;
(c) the peak RSS of a consumer process with a million jobs queued.

(a) and (b) call the project's classes in-process, one cycle at a time, each
on a fresh queue (its own key prefix), and keep the median of a few tries.
"""

import statistics
import time
from dataclasses import dataclass

from bench import BenchFailed
from bench.children import Child
from bench.services import BenchDatabase, RedisNamespace
from common.process.producer import Producer
from common.queue.jobs import Job, JobQueue, connect
from common.settings import Partition, Settings
from common.store.campaign import CampaignTable

SCALING_PENDING = 1_000
TRIES = 7  # after one untimed warm-up try
FILL_BATCH = 10_000
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Comparison:
    """Median seconds of one cycle without and with the extra load."""

    small: float
    large: float

    @property
    def ratio(self) -> float:
        return self.large / self.small


@dataclass(frozen=True)
class MemoryCheck:
    jobs: int
    peak_rss_mb: float
    seconds: float
    sent: int


def median_of_tries(timed) -> float:
    """Median of TRIES calls of `timed` (which returns seconds), after one warm-up call:
    the first touches caches and connections the others find ready."""
    timed()
    return statistics.median(timed() for _ in range(TRIES))


class Checks:
    def __init__(self, db: BenchDatabase, namespace: RedisNamespace, batch_size: int):
        self.db = db
        self.namespace = namespace
        self.batch_size = batch_size
        self.redis = connect(namespace.url)
        self.tries = 0

    def fresh_prefix(self) -> str:
        self.tries += 1
        return f"{self.namespace.prefix}try{self.tries}:"

    def settings(self, partition: Partition, prefix: str) -> Settings:
        return Settings(
            database=self.db.target,
            redis_url=self.namespace.url,
            partition=partition,
            key_prefix=prefix,
            batch_size=self.batch_size,
        )

    def table(self, settings: Settings) -> CampaignTable:
        return CampaignTable(settings.database, settings.table, settings.phone_column, settings.status_column)

    def producer_poll(self) -> float:
        """Seconds for one poll of the odd and the even producer, on a fresh queue."""
        prefix = self.fresh_prefix()
        producers = []
        for index in (1, 0):
            settings = self.settings(Partition(index, 2), prefix)
            producers.append(Producer(settings, self.table(settings), JobQueue(self.redis, settings.partition, prefix)))
        for producer in producers:
            producer.initialize()  # connects, so the timing below is the poll alone
        started = time.perf_counter()
        for producer in producers:
            producer.loop()
        elapsed = time.perf_counter() - started
        for producer in producers:
            producer.shutdown()
        return elapsed

    def producer_scaling(self, processed: int) -> Comparison:
        self.db.seed(pending=SCALING_PENDING)
        small = median_of_tries(self.producer_poll)
        self.db.seed(pending=SCALING_PENDING, processed=processed)
        large = median_of_tries(self.producer_poll)
        return Comparison(small, large)

    def consumer_poll(self, table: CampaignTable, jobs: list[Job]) -> float:
        """Seconds for one claim of a fresh queue's jobs and the pending check of their rows."""
        prefix = self.fresh_prefix()
        queue = JobQueue(self.redis, Partition(1, 2), prefix)
        queue.enqueue(jobs)
        started = time.perf_counter()
        claims, *_ = queue.claim(self.batch_size, LEASE_SECONDS)
        pending = table.pending_among([claim.row_id for claim in claims])
        elapsed = time.perf_counter() - started
        if len(pending) != min(len(jobs), self.batch_size):
            raise BenchFailed(
                f"consumer poll check: claimed {len(claims)}, {len(pending)} pending, "
                f"expected {min(len(jobs), self.batch_size)}"
            )
        return elapsed

    def consumer_scaling(self, unrelated: int) -> Comparison:
        """Needs the pending rows producer_scaling leaves behind."""
        jobs = [Job(row_id, f"62812{row_id:08d}") for row_id in self.db.pending_ids() if row_id % 2 == 1]
        table = self.table(self.settings(Partition(1, 2), ""))
        try:
            table.check()
            small = median_of_tries(lambda: self.consumer_poll(table, jobs))
            self.fill(unrelated)
            large = median_of_tries(lambda: self.consumer_poll(table, jobs))
        finally:
            table.close()
        return Comparison(small, large)

    def fill(self, count: int) -> None:
        """`count` keys the project knows nothing about, in the queue's Redis database."""
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, count, FILL_BATCH):
            pipe.mset(
                {f"{self.namespace.prefix}unrelated:{i}": "x" for i in range(start, min(start + FILL_BATCH, count))}
            )
            if len(pipe) >= 10:
                pipe.execute()
        pipe.execute()

    def consumer_memory(self, jobs: int, seconds: float, env: dict, log_dir) -> MemoryCheck:
        """Peak RSS of one consumer (partition 0 of 1) started with `jobs` queued."""
        self.db.seed(pending=jobs)
        self.namespace.clear()
        queue = JobQueue(self.redis, Partition(0, 1), self.namespace.prefix)
        for start in range(1, jobs + 1, FILL_BATCH):
            queue.enqueue([Job(i, f"62812{i:08d}") for i in range(start, min(start + FILL_BATCH, jobs + 1))])
        consumer = Child.python_module("memory-consumer", "consumers", ["--partition", "0", "--of", "1"], env, log_dir)
        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds and consumer.running():
                time.sleep(0.1)
        finally:
            usage = consumer.stop()
        if usage.exit_code != 0:
            raise BenchFailed(f"the memory-check consumer exited with {usage.exit_code}: {consumer.log_tail()}")
        return MemoryCheck(jobs, usage.peak_rss_mb, time.monotonic() - started, self.db.counts().get(0, 0))
