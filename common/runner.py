"""The driver around a role (producer or consumer): signals, sleeping, outages.

A role has `initialize()`, `loop()` (one cycle; True means "call again at
once"), `request_stop()` and `shutdown()`. Everything about time and
signals lives here, so one cycle of a role can be called from a test.
"""

import logging
import os
import signal
import threading
import time

from common.errors import ServiceUnavailable
from common.heartbeat import Heartbeat
from common.run_lock import RunLock

log = logging.getLogger(__name__)

EXIT_SECOND_SIGNAL = 130
KEEP_ALIVE_EVERY = 5.0  # seconds: a long sleep still beats and renews the lock this often


class Driver:
    def __init__(self, role, poll_interval: float, once: bool, min_delay: float = 0.05,
                 heartbeat: Heartbeat | None = None, lock: RunLock | None = None):
        self.role = role
        self.heartbeat = heartbeat
        self.lock = lock
        self.poll_interval = poll_interval
        self.once = once
        self.min_delay = min(min_delay, poll_interval)
        self.wake = threading.Event()
        self.signals = 0

    def on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals > 1:
            # Leases cover whatever was in flight; it becomes due again by itself.
            os._exit(EXIT_SECOND_SIGNAL)
        log.info("%s received: finishing in-flight work (send it again to exit at once)",
                 signal.Signals(signum).name)
        self.role.request_stop()
        self.wake.set()

    def run(self) -> None:
        """Initialize (errors propagate: start-up failures are fatal), then cycle
        until stopped, riding out outages of MySQL, Redis or the endpoint."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.on_signal)
        if self.lock:
            self.lock.acquire()
        try:
            self.run_loop()
        finally:
            if self.lock:
                self.lock.release()

    def keep_alive(self) -> bool:
        """Beat and renew the run lock; False (and a stop) once the lock is lost."""
        if self.heartbeat:
            self.heartbeat.beat(self.role.vitals)
        if self.lock and not self.lock.renew():
            log.error("the run lock was taken by another copy (this run stalled for over a minute); stopping")
            self.role.request_stop()
            return False
        return True

    def nap(self, seconds: float) -> None:
        """Sleep until woken or `seconds` pass, keeping the heartbeat and the
        lock alive however long the poll interval is."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.role.stopping:
            if self.wake.wait(min(left, KEEP_ALIVE_EVERY)) or not self.keep_alive():
                return

    def run_loop(self) -> None:
        self.role.initialize()
        idle_delay = self.min_delay
        outage_since = None
        outage_delay = 1.0
        try:
            while not self.role.stopping:
                if not self.keep_alive():
                    break
                try:
                    busy = self.role.loop()
                except ServiceUnavailable as exc:
                    if self.once:
                        raise
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.warning("%s; retrying with backoff", exc)
                    self.nap(outage_delay)
                    # Back off, but try at least once per poll interval, so
                    # work resumes soon after the service is back.
                    outage_delay = min(outage_delay * 2, max(self.poll_interval, 1.0))
                    continue
                if outage_since is not None:
                    log.info("services are back after %.0f s", time.monotonic() - outage_since)
                    outage_since, outage_delay = None, 1.0
                if busy:
                    idle_delay = self.min_delay
                    continue
                if self.once:
                    break
                # Idle: back off up to the poll interval, so an empty queue
                # costs little and a busy one never waits.
                self.nap(idle_delay)
                idle_delay = min(idle_delay * 2, self.poll_interval)
        finally:
            self.role.shutdown()
            if self.heartbeat:
                self.heartbeat.stop()
