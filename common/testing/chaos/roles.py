"""The four processes of the run: start each with a log of its own, kill one,
notice one that exited on its own, restart what is due, and stop them all
as honcho does. A kill is recorded with the rows it exposed."""

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.testing.chaos.config import EXIT_RESTART_PAUSE, ROLES, STOP_GRACE
from common.testing.processes import spawn, stop_process


@dataclass
class Role:
    module: str
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    starts: int = 0


@dataclass(frozen=True)
class Exit:
    """A role that ended without being killed by the run: always a failure,
    since long-running roles wait for MySQL and Redis instead of exiting."""

    module: str
    code: int
    at: float


class Roles:
    """The four processes, each with a log; restarts what was killed or exited."""

    def __init__(self, env: dict, logs: Path, clock):
        self.env = env
        self.logs = logs
        self.clock = clock
        self.roles = {module: Role(module) for module in ROLES}
        self.exits: list[Exit] = []

    def log_path(self, module: str) -> Path:
        return self.logs / f"{module.replace('.', '-')}.log"

    def note(self, module: str, text: str) -> None:
        """A marker line in the role's log, so its lines can be matched with the run's events."""
        with open(self.log_path(module), "a") as log:
            log.write(f"=== chaos {self.clock():.1f} s: {text} ===\n")

    def start(self, module: str) -> None:
        role = self.roles[module]
        role.starts += 1
        self.note(module, f"start #{role.starts}")
        role.process = spawn([sys.executable, "-m", module], self.log_path(module), self.env)
        role.started_at, role.restart_at = self.clock(), None

    def running(self) -> list[str]:
        return [m for m, role in self.roles.items() if role.process is not None and role.process.poll() is None]

    def all_up_for(self, seconds: float) -> bool:
        now = self.clock()
        return all(
            role.process is not None and role.process.poll() is None and now - role.started_at >= seconds
            for role in self.roles.values()
        )

    def kill(self, module: str, restart_after: float) -> None:
        """SIGKILL, wait until it is gone, and restart it after `restart_after` seconds."""
        role = self.roles[module]
        assert role.process is not None, f"{module} is not running"  # the run kills only running roles
        role.process.kill()
        role.process.wait()
        self.note(module, "SIGKILL")
        role.process, role.restart_at = None, self.clock() + restart_after

    def supervise(self) -> None:
        """Notice processes that exited on their own and (re)start what is due."""
        now = self.clock()
        for module, role in self.roles.items():
            if role.process is not None and role.process.poll() is not None:
                code = role.process.returncode
                self.exits.append(Exit(module, code, now))
                self.note(module, f"exited {code}")
                role.process, role.restart_at = None, now + EXIT_RESTART_PAUSE
            if role.process is None and role.restart_at is not None and now >= role.restart_at:
                self.start(module)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM all four at once, as honcho does; None for one that had to be SIGKILLed."""
        for role in self.roles.values():
            role.restart_at = None
            if role.process is not None and role.process.poll() is None:
                role.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        return {
            m: stop_process(role.process, max(deadline - time.monotonic(), 0.1), signalled=True)
            for m, role in self.roles.items()
            if role.process is not None
        }

    def kill_all(self) -> None:
        for role in self.roles.values():
            role.restart_at = None
            if role.process is not None and role.process.poll() is None:
                role.process.kill()
                role.process.wait()

    def tracebacks(self) -> dict[str, int]:
        return {
            m: self.log_path(m).read_text(errors="replace").count("Traceback")
            for m in ROLES
            if self.log_path(m).exists()
        }


@dataclass
class Kill:
    module: str
    exposed: int | None = None  # consumers: rows delivered but not yet recorded as sent
