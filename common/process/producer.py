"""The producer: pending rows of one partition → jobs in Redis, queued once each."""

import logging
import time

from common import metrics
from common.queue.jobs import Job, JobQueue
from common.settings import Settings
from common.store.campaign import CampaignTable

log = logging.getLogger(__name__)


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
            new, depth = self.queue.enqueue([Job(row.id, row.phone, params=row.params) for row in page])
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
