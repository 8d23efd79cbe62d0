"""The producer: pending rows of one partition → jobs in Redis, queued once each."""

import logging

from common.config import Settings
from common.db import CampaignTable
from common.jobs import Job, JobQueue

log = logging.getLogger(__name__)


class Producer:
    """Each cycle walks the partition's pending rows in pages and queues them.

    Rows already queued are skipped by SET NX in Redis, so polling again is
    cheap and safe. The walk stops once the queue holds `max_queued` jobs, so
    a huge backlog is fed in as consumers drain it, not copied into Redis.
    """

    def __init__(self, settings: Settings, table: CampaignTable, queue: JobQueue):
        self.settings = settings
        self.table = table
        self.queue = queue
        self.stopping = False

    def initialize(self) -> None:
        self.table.check()
        self.queue.depth()

    def loop(self) -> bool:
        """One poll cycle. Returns False: the next cycle waits for the poll interval."""
        partition = self.settings.partition
        seen = queued = depth = 0
        for page in self.table.pending_rows(partition.index, partition.of, self.settings.batch_size):
            new, depth = self.queue.enqueue([Job(row.id, row.phone) for row in page])
            seen += len(page)
            queued += new
            if self.stopping or depth >= self.settings.max_queued:
                break
        if queued:
            log.info("queued %d new jobs (%d pending rows read, queue depth %d)", queued, seen, depth)
        else:
            log.debug("nothing new to queue (%d pending rows read)", seen)
        return False

    def request_stop(self) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        self.table.close()
