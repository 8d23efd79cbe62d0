"""Child processes for the harnesses (the chaos run, the benchmark): start one
with its output in a log, stop it with a grace period, wait until something
is up, and find a server binary. Kept apart from the services they start so
that each harness starts, stops and waits the same way."""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class SetupFailed(Exception):
    """A service could not be started; the message says which and where its log is."""


def find_server(name: str) -> str | None:
    """A server binary; they live in sbin, which is not on a normal user's PATH."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = Path(directory, name)
        if os.access(path, os.X_OK):
            return str(path)
    return None


def die_with_parent() -> None:
    """Runs in each child before exec: if the harness dies, even by SIGKILL (a
    test timeout), the child gets SIGKILL too, so no private server is left
    running on a random port."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(argv: list[str], log_path: Path, env: dict | None = None, tied: bool = True) -> subprocess.Popen:
    """Start a child in the checkout, with its output appended to `log_path`.

    A `tied` child runs in its own session (a Ctrl-C reaches only the harness,
    which then stops everything in order) and dies with the harness. An
    untied one stays in the harness's process group and is started by vfork,
    as subprocess does without a pre-exec hook: the benchmark's way."""
    tie = tied and sys.platform == "linux"
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL if tied else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=tied,
            preexec_fn=die_with_parent if tie else None,
        )


def stop_process(process: subprocess.Popen | None, grace: float, signalled: bool = False) -> int | None:
    """SIGTERM (unless `signalled` already), then SIGKILL after `grace` seconds.
    Returns the exit code, or None when the process had to be killed."""
    if process is None:
        return None
    if process.poll() is not None:
        return process.returncode
    if not signalled:
        process.terminate()
    try:
        return process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    """Poll `condition` until it holds; SetupFailed naming `what` and `log` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SetupFailed(f"{what} did not happen within {timeout:g} s; see {log}")
        time.sleep(0.1)
