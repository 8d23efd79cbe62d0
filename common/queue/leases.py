"""Keeping the leases of claimed jobs alive while they wait for or are in a send.

A lease is what stops a second consumer from claiming a job: it must not run
out while the first one is still sending it, however slow the endpoint. A
thread of its own renews them, so a main loop busy with MySQL or waiting out
an outage cannot let them lapse. A consumer killed with SIGKILL stops renewing,
and its jobs become due again once the last lease ends.

Lease ends are on Redis's clock; the keeper remembers how far ahead of ours
that clock is, so a host whose clock is off neither sends on a lease that
has run out nor gives up one that has not.
"""

import logging
import threading

from common import metrics
from common.errors import ServiceUnavailable
from common.queue.jobs import JobQueue, Lease, now_ms

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, queue: JobQueue, lease_seconds: float):
        self.queue = queue
        self.lease_ms = int(lease_seconds * 1000)
        self.lease_seconds = lease_seconds
        self.held: dict[int, int] = {}  # row id -> end of its lease (ms, Redis's clock)
        self.clock_offset_ms = 0  # Redis's clock minus ours, as last seen (plus a round trip: errs early)
        # Held across the Redis call, so the consumer's conditional moves
        # never use a lease end that Redis no longer has.
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def hold(self, row_ids: list[int], lease: Lease) -> None:
        """Keep renewing the leases of these claimed jobs, which end at `lease`."""
        with self.lock:
            self.held.update(dict.fromkeys(row_ids, lease.until_ms))
            self.clock_offset_ms = lease.clock_offset_ms

    def remaining_ms(self, row_id: int) -> int:
        # No lock: a send thread must not wait out a renewal's round trip. A
        # read during one sees the lease end from before it, which is earlier.
        return self.held.get(row_id, 0) - (now_ms() + self.clock_offset_ms)

    def run(self) -> None:
        # Renewing every third of a lease keeps at least two thirds of it ahead.
        while not self.stopped.wait(self.lease_ms / 3000):
            try:
                self.renew()
            except Exception:
                # Whatever went wrong, the next renewal must still happen:
                # without it every lease held here lapses.
                log.exception("renewing leases failed; trying again in %.0f s", self.lease_ms / 3000)

    def renew(self) -> None:
        with self.lock:
            if not self.held:
                return
            try:
                extended, lease = self.queue.extend(dict(self.held), self.lease_seconds)
            except ServiceUnavailable as exc:
                log.warning("could not renew %d leases: %s", len(self.held), exc)
                return
            self.clock_offset_ms = lease.clock_offset_ms
            lost = [row_id for row_id in self.held if row_id not in extended]
            for row_id in extended:
                self.held[row_id] = lease.until_ms
            for row_id in lost:
                # Redis lost the job (restarted empty) or its lease lapsed: it
                # may be claimed elsewhere, so it must not start sending here.
                del self.held[row_id]
        if lost:
            metrics.LEASES_LOST.labels(str(self.queue.partition)).inc(len(lost))
            log.warning("lost the lease of %d jobs (Redis restarted?); they will not be sent from here", len(lost))
