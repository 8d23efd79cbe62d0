"""The order of the run's faults: one step at a time, spread over the run,
each held for its seconds and undone before the next begins."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Step:
    """One fault of the schedule: `begin` starts it and `end`, `seconds` later
    (at once when the chaos stops early), undoes it; `during` runs at every
    look at the run in between."""

    name: str
    begin: Callable[[], None]
    end: Callable[[], None] | None = None
    seconds: float = 0.0
    during: Callable[[], None] | None = None


class Schedule:
    """The faults one after another, spread over the run: step k of n begins
    once k/(n+1) of the rows are done or of the time limit has passed, after
    the step before it has ended and every outage is over."""

    def __init__(self, steps: list[Step], clock):
        self.steps = steps
        self.clock = clock
        self.next = 0
        self.active: Step | None = None
        self.ends_at = 0.0

    def advance(self, share_done: float, quiet: bool) -> None:
        """End the step whose time is up, or begin the next one when it is due."""
        if self.active is not None:
            if self.clock() < self.ends_at:
                if self.active.during is not None:
                    self.active.during()
                return
            self.finish()
        if quiet and self.next < len(self.steps) and share_done >= (self.next + 1) / (len(self.steps) + 1):
            step = self.steps[self.next]
            self.next += 1
            self.active = step
            step.begin()
            self.ends_at = self.clock() + step.seconds

    def finish(self) -> None:
        """End the step under way, if any."""
        step, self.active = self.active, None
        if step is not None and step.end is not None:
            step.end()

    def done(self) -> bool:
        return self.active is None and self.next == len(self.steps)

    def not_begun(self) -> list[str]:
        return [step.name for step in self.steps[self.next :]]
