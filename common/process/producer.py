"""The producer: pending rows of one partition → jobs in Redis, queued once each."""

import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from common import metrics
from common.errors import ConfigError
from common.queue.jobs import Job, JobQueue
from common.settings import Settings
from common.store.campaign import CampaignTable, Row
from common.timing import moment, parse_duration, zone_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """When a row may go out and until when: its schedule (SCHEDULE_COLUMN,
    wall-clock in SEND_TIMEZONE), held until START_AT, valid for VALID_FOR
    (or the row's VALID_FOR_COLUMN) after that. Set once, when the row is
    first queued: SET NX keeps the first payload."""

    schedule_column: str | None = None
    zone: ZoneInfo | None = None
    start_at: float | None = None  # unix seconds
    valid_for: float | None = None  # seconds
    valid_for_column: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> "Timing":
        return cls(
            settings.schedule_column,
            zone_of(settings.timezone),
            settings.start_at_epoch(),
            settings.valid_for_seconds(),
            settings.valid_for_column,
        )

    def job(self, row: Row) -> Job:
        due, problems = self.start_at, []
        if self.schedule_column and (text := row.params.get(self.schedule_column)):
            try:
                due = max(moment(text, self.zone), due or 0)
            except (ValueError, OverflowError):
                problems.append(f"{self.schedule_column} is not a time like 2026-12-07 09:00")
        valid_for = self.valid_for
        if self.valid_for_column and (text := row.params.get(self.valid_for_column)):
            try:
                valid_for = parse_duration(text)
            except ConfigError:
                problems.append(f"{self.valid_for_column} is not a duration like 3h or 90m")
        valid_until = ((due or time.time()) + valid_for) if valid_for else None
        return Job(
            row.id,
            row.phone,
            params=row.params,
            due_ms=int(due * 1000) if due else None,
            valid_until_ms=int(valid_until * 1000) if valid_until else None,
            problem="; ".join(problems) or None,
        )


class Producer:
    """Each cycle walks the partition's pending rows in pages and queues them.

    Rows already queued are skipped by SET NX in Redis, so queueing twice is
    harmless; the walk only avoids the work. It resumes after the last row it
    queued, so a poll reads new rows, not the whole backlog again. It starts
    over from the first row when Redis lost the queue, and every
    `full_scan_interval` seconds for rows that became pending again behind it
    (a campaign reset by hand, an insert committed out of id order). The walk
    stops once the queue holds `max_queued` jobs, so a huge backlog is fed in
    as consumers drain it, not copied into Redis.
    """

    def __init__(self, settings: Settings, table: CampaignTable, queue: JobQueue):
        self.settings = settings
        self.table = table
        self.queue = queue
        self.stopping = False
        self.after_id = 0  # the walk resumes after this row
        self.next_full_scan = 0.0
        self.timing = Timing.of(settings)

    def initialize(self) -> None:
        self.table.check()
        self.queue.depth()

    def loop(self) -> bool:
        """One poll cycle. Returns False: the next cycle waits for the poll interval."""
        partition = self.settings.partition
        lost = self.queue.queue_was_lost()
        if lost or time.monotonic() >= self.next_full_scan:
            if lost and self.next_full_scan:
                log.warning("Redis lost the queue (restarted or flushed); queueing every pending row again")
            self.after_id = 0
            self.next_full_scan = time.monotonic() + self.settings.full_scan_interval
        seen = queued = depth = 0
        pages = self.table.pending_rows(partition.index, partition.of, self.settings.batch_size, self.after_id)
        for page in pages:
            new, depth = self.queue.enqueue([self.timing.job(row) for row in page])
            self.after_id = page[-1].id
            seen += len(page)
            queued += new
            if self.stopping or depth >= self.settings.max_queued:
                break
        metrics.QUEUED.labels(str(partition)).inc(queued)
        if seen:
            metrics.QUEUE_DEPTH.labels(str(partition)).set(depth)
        if queued:
            log.info("queued %d new jobs (%d pending rows read, queue depth %d)", queued, seen, depth)
        else:
            log.debug("nothing new to queue (%d pending rows read)", seen)
        return False

    def vitals(self) -> dict:
        """What its heartbeat tells `status`."""
        return {"queued_through": self.after_id}

    def request_stop(self) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        self.table.close()
