"""The driver: start-up waits for services, outages are ridden out, the
heartbeat and the run lock stay alive through long sleeps, a lost lock stops the run."""

import logging
import os
import signal
import threading
import time

import pytest

from common.errors import ConfigError, LockHeld, ServiceUnavailable
from common.process import driver as runner
from common.process.driver import Driver


class IdleRole:
    """A role with nothing to do; `failures` are raised by initialize() then loop(), in turn."""

    def __init__(self, initialize_failures=(), loop_failures=(), cycles=1):
        self.stopping = False
        self.initialize_failures = list(initialize_failures)
        self.loop_failures = list(loop_failures)
        self.initialized = 0
        self.cycles = cycles
        self.shut_down = False

    def vitals(self):
        return {}

    def initialize(self):
        self.initialized += 1
        if self.initialize_failures:
            raise self.initialize_failures.pop(0)

    def loop(self):
        if self.loop_failures:
            raise self.loop_failures.pop(0)
        self.cycles -= 1
        if self.cycles <= 0:
            self.request_stop()
        return False

    def request_stop(self):
        self.stopping = True

    def shutdown(self):
        self.shut_down = True


class CountingBeat:
    def __init__(self):
        self.beats = 0

    def beat(self, vitals):
        vitals()
        self.beats += 1

    def stop(self):
        pass


class TakenLock:
    """A lock another copy takes over after it was acquired."""

    def __init__(self):
        self.released = False

    def acquire(self):
        pass

    def renew(self):
        raise LockHeld("another consumer for partition 1/2 took the run lock lock:consumer:2:1")

    def release(self):
        self.released = True


MYSQL_DOWN = ServiceUnavailable("MySQL at 127.0.0.1:1 is unreachable: connection refused")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(runner, "KEEP_ALIVE_EVERY", 0.02)
    monkeypatch.setattr(runner, "FIRST_RETRY", 0.01)


def test_a_long_idle_sleep_still_beats():
    driver = Driver(poll_interval=90, once=False)
    driver.role, driver.heartbeat = IdleRole(), CountingBeat()
    started = time.monotonic()
    driver.nap(0.2)
    assert time.monotonic() - started >= 0.2 and driver.heartbeat.beats >= 5


def test_start_up_waits_for_services_with_one_line_when_waiting_starts_and_one_when_they_are_back(caplog):
    caplog.set_level(logging.INFO)
    role = IdleRole(initialize_failures=[MYSQL_DOWN] * 3)
    Driver(poll_interval=0.05, once=False).run(role)
    assert role.initialized == 4 and role.shut_down
    waiting = [r.getMessage() for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert waiting == ["MySQL at 127.0.0.1:1 is unreachable: connection refused; retrying with backoff"]
    assert len([r for r in caplog.records if "services are back" in r.getMessage()]) == 1


def test_once_gives_up_at_start_up_when_a_service_is_unreachable():
    role = IdleRole(initialize_failures=[MYSQL_DOWN])
    with pytest.raises(ServiceUnavailable):
        Driver(poll_interval=0.05, once=True).run(role)
    assert role.initialized == 1


def test_a_configuration_error_at_start_up_is_not_waited_out():
    role = IdleRole(initialize_failures=[ConfigError("MySQL refused the login")])
    with pytest.raises(ConfigError):
        Driver(poll_interval=0.05, once=False).run(role)
    assert role.initialized == 1


def test_an_outage_while_running_is_ridden_out():
    role = IdleRole(loop_failures=[MYSQL_DOWN] * 2)
    Driver(poll_interval=0.05, once=False).run(role)
    assert role.stopping and role.cycles == 0 and role.shut_down


def test_a_sigterm_while_waiting_at_start_up_stops_at_once(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(runner, "FIRST_RETRY", 30.0)
    role = IdleRole(initialize_failures=[MYSQL_DOWN] * 100)
    driver = Driver(poll_interval=60, once=False)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    with driver.handling_signals():
        driver.run(role)
    assert time.monotonic() - started < 2
    assert role.initialized == 1 and "stopped before start-up finished" in caplog.text


def test_a_sigterm_while_waiting_for_redis_before_the_role_exists_stops_at_once(monkeypatch):
    monkeypatch.setattr(runner, "FIRST_RETRY", 30.0)
    attempts = []

    def connect():
        attempts.append(1)
        raise ServiceUnavailable("Redis is unreachable: connection refused")

    driver = Driver(poll_interval=60, once=False)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    with driver.handling_signals():
        driver.until_up(connect)
        raise AssertionError("the wait returned without Redis")
    assert time.monotonic() - started < 2 and len(attempts) == 1


def test_a_run_lock_another_copy_took_stops_the_run_with_lock_held():
    role, lock = IdleRole(cycles=1000), TakenLock()
    with pytest.raises(LockHeld, match="took the run lock"):
        Driver(poll_interval=90, once=False).run(role, lock=lock)
    assert role.stopping and role.shut_down and lock.released


def test_a_run_lock_another_copy_took_while_waiting_at_start_up_stops_the_run_with_lock_held():
    role = IdleRole(initialize_failures=[MYSQL_DOWN] * 100)
    with pytest.raises(LockHeld):
        Driver(poll_interval=90, once=False).run(role, lock=TakenLock())
    assert role.initialized == 1


def test_a_run_lock_another_copy_took_ends_a_long_sleep():
    driver = Driver(poll_interval=90, once=False)
    driver.role, driver.lock = IdleRole(), TakenLock()
    started = time.monotonic()
    driver.nap(5)
    assert driver.role.stopping and time.monotonic() - started < 1
