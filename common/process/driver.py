"""The driver around a role (producer or consumer): signals, sleeping, outages.

A role has `initialize()`, `loop()` (one cycle; True means "call again at
once"), `request_stop()` and `shutdown()`. Everything about time and
signals lives here, so one cycle of a role can be called from a test.

Start-up waits for MySQL, Redis and the endpoint the way a run rides out
their outages: under honcho one process that exits stops them all, so a
service still starting must not end the stack. Only `--once` (cron tries
again next minute) gives up at once.
"""

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Protocol

from common.errors import LockHeld, ServiceUnavailable
from common.queue.heartbeat import Heartbeat
from common.queue.run_lock import RunLock

log = logging.getLogger(__name__)

EXIT_SECOND_SIGNAL = 130
KEEP_ALIVE_EVERY = 5.0  # seconds: a long sleep still beats and renews the lock this often
FIRST_RETRY = 1.0  # seconds before the first retry while a service is away; doubles from there
LONGEST_RETRY = 10.0  # seconds: retries never drift further apart, so work resumes soon after a service is back


class Role(Protocol):
    """What the driver runs: a producer or a consumer."""

    stopping: bool

    def initialize(self) -> None: ...

    def loop(self) -> bool: ...

    def vitals(self) -> dict: ...

    def request_stop(self) -> None: ...

    def shutdown(self) -> None: ...


class StopRequested(Exception):
    """A signal (or a lost run lock) came while waiting for a service."""


class Driver:
    def __init__(self, poll_interval: float, once: bool, min_delay: float = 0.05):
        self.role: Role | None = None
        self.heartbeat: Heartbeat | None = None
        self.lock: RunLock | None = None  # set once acquired: only a lock we took is renewed
        self.lost_lock: LockHeld | None = None
        self.poll_interval = poll_interval
        self.once = once
        self.min_delay = min(min_delay, poll_interval)
        self.longest_retry = max(FIRST_RETRY, min(poll_interval, LONGEST_RETRY))
        self.wake = threading.Event()
        self.signals = 0

    @contextmanager
    def handling_signals(self):
        """Inside it, the first SIGINT or SIGTERM stops gracefully (a wait for a
        service ends at once) and a second one exits at once."""
        previous = {signum: signal.signal(signum, self.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        except StopRequested:
            log.info("stopped before start-up finished")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals > 1:
            # Leases cover whatever was in flight; it becomes due again by itself.
            os._exit(EXIT_SECOND_SIGNAL)
        log.info("%s received: finishing in-flight work (send it again to exit at once)", signal.Signals(signum).name)
        if self.role is not None:
            self.role.request_stop()
        self.wake.set()

    def stopping(self) -> bool:
        return self.wake.is_set() or (self.role is not None and self.role.stopping)

    def until_up(self, attempt):
        """Call `attempt` until it gets past ServiceUnavailable and return what
        it returns: one line when the wait starts, one when services are back,
        retries from FIRST_RETRY doubling up to the poll interval. --once
        raises the first failure; a stop while waiting raises StopRequested,
        or LockHeld when the stop came from losing the run lock."""
        since = None
        delay = FIRST_RETRY
        while True:
            try:
                result = attempt()
            except ServiceUnavailable as exc:
                if self.once:
                    raise
                if since is None:
                    since = time.monotonic()
                    log.warning("%s; retrying with backoff", exc)
                self.nap(delay)
                if self.stopping():
                    raise self.lost_lock or StopRequested() from None
                delay = min(delay * 2, self.longest_retry)
                continue
            if since is not None:
                log.info("services are back after %.0f s", time.monotonic() - since)
            return result

    def run(self, role: Role, heartbeat: Heartbeat | None = None, lock: RunLock | None = None) -> None:
        """Take the run lock and initialize (both wait for services), then cycle
        until stopped. Raises LockHeld when another copy took the lock meanwhile."""
        if self.wake.is_set():
            raise StopRequested()
        self.role, self.heartbeat = role, heartbeat
        try:
            if lock:
                self.until_up(lock.acquire)
                self.lock = lock
            self.until_up(role.initialize)
            self.run_loop(role)
        finally:
            if heartbeat:
                heartbeat.stop()
            if self.lock:
                self.lock.release()
        if self.lost_lock:
            raise self.lost_lock

    def keep_alive(self) -> bool:
        """Beat and renew the run lock; False (and a stop) once another copy holds it."""
        if self.heartbeat and self.role:
            self.heartbeat.beat(self.role.vitals)
        if self.lock and not self.lost_lock:
            try:
                self.lock.renew()
            except LockHeld as exc:
                log.warning("another copy holds the run lock now; finishing in-flight work, then stopping")
                self.lost_lock = exc
                if self.role:
                    self.role.request_stop()
        return not self.lost_lock

    def nap(self, seconds: float) -> None:
        """Sleep until woken or `seconds` pass, keeping the heartbeat and the
        lock alive however long the poll interval is."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.stopping():
            if self.wake.wait(min(left, KEEP_ALIVE_EVERY)) or not self.keep_alive():
                return

    def run_loop(self, role: Role) -> None:
        idle_delay = self.min_delay
        try:
            while not role.stopping:
                if not self.keep_alive():
                    break
                try:
                    busy = self.until_up(role.loop)
                except StopRequested:
                    break
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
            role.shutdown()
