"""The driver keeps the heartbeat and the run lock alive through long sleeps."""

import time

from common import runner
from common.runner import Driver


class IdleRole:
    stopping = False

    def vitals(self):
        return {}

    def request_stop(self):
        self.stopping = True


class CountingBeat:
    def __init__(self):
        self.beats = 0

    def beat(self, vitals):
        vitals()
        self.beats += 1


class LostLock:
    def renew(self):
        return False


def test_a_long_idle_sleep_still_beats(monkeypatch):
    monkeypatch.setattr(runner, "KEEP_ALIVE_EVERY", 0.02)
    beat = CountingBeat()
    started = time.monotonic()
    Driver(IdleRole(), poll_interval=90, once=False, heartbeat=beat).nap(0.2)
    assert time.monotonic() - started >= 0.2 and beat.beats >= 5


def test_a_lost_run_lock_ends_the_sleep_and_stops_the_role(monkeypatch):
    monkeypatch.setattr(runner, "KEEP_ALIVE_EVERY", 0.02)
    role = IdleRole()
    started = time.monotonic()
    Driver(role, poll_interval=90, once=False, lock=LostLock()).nap(5)
    assert role.stopping and time.monotonic() - started < 1
