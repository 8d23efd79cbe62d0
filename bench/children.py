"""Child processes whose CPU time and peak memory the benchmark reports.

CPU time comes from `os.wait4` as a child is reaped (its own reaped children,
such as nginx's workers, included). Peak memory does not: a child spawned
with vfork + exec, as subprocess does, starts with its parent's peak RSS in
ru_maxrss, so every child would show at least the benchmark's own. The
kernel's per-process high-water mark (VmHWM in /proc/<pid>/status) has no
such floor; it is read until the child exits.
"""

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.testing.processes import spawn


@dataclass(frozen=True)
class Usage:
    name: str
    exit_code: int
    peak_rss_mb: float
    cpu_seconds: float


class Child:
    """One process started by the benchmark, its output going to a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path, stop_signal=signal.SIGTERM):
        self.name = name
        self.stop_signal = stop_signal
        self.log_path = log_dir / f"{name}.log"
        self.log_path.write_bytes(b"")  # this start's output only
        # Untied: in the benchmark's process group, started by vfork (see spawn).
        self.process = spawn(args, self.log_path, env, tied=False)
        self.usage: Usage | None = None
        # The project's roles take a second SIGTERM as "exit at once": send one only.
        self.terminated = False
        self.peak_rss_kb = 0

    @classmethod
    def python_module(cls, name: str, module: str, args: list[str], env: dict, log_dir: Path) -> "Child":
        return cls(name, [sys.executable, "-m", module, *args], env, log_dir)

    def running(self) -> bool:
        return self.usage is None and not self.exited()

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 15.0) -> Usage:
        """Signal it to stop, wait up to `grace` seconds (then SIGKILL), and read its usage."""
        if self.usage is not None:
            return self.usage
        pid = self.process.pid
        self.sample_rss()
        if not self.exited():
            self.terminate()
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self.exited():
                self.sample_rss()
                time.sleep(0.02)
            if not self.exited():
                self._signal(signal.SIGKILL)
        # Never Popen.poll() or wait(): they reap the child and its usage with it.
        _, status, usage = os.wait4(pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.usage = Usage(self.name, self.process.returncode, self.peak_rss_kb / 1024, usage.ru_utime + usage.ru_stime)
        return self.usage

    def sample_rss(self) -> None:
        """Keep the largest VmHWM of the child and of its own children (nginx's workers)."""
        pid = self.process.pid
        try:
            pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
        except OSError:
            pids = [pid]
        for each in pids:
            try:
                status = Path(f"/proc/{each}/status").read_text()
            except OSError:
                continue  # gone, or a zombie without memory
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def exited(self) -> bool:
        try:
            waited = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return waited is not None

    def terminate(self) -> None:
        if not self.terminated:
            self.terminated = True
            self._signal(self.stop_signal)

    def _signal(self, signum: int) -> None:
        # os.kill, not Popen.send_signal, which polls and so reaps. An unreaped
        # child keeps its pid, so the signal cannot reach another process.
        os.kill(self.process.pid, signum)


def stop_all(children: list[Child], grace: float = 15.0) -> list[Usage]:
    """Stop them together: signal every one, keep reading their memory until
    they exit (SIGKILL after `grace` seconds), then reap them."""
    live = [child for child in children if child.usage is None]
    for child in live:
        child.sample_rss()
        child.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        live = [child for child in live if not child.exited()]
        if not live:
            break
        for child in live:
            child.sample_rss()
        time.sleep(0.02)
    return [child.stop(grace=0) for child in children]
