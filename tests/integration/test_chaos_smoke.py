"""A short chaos run (scripts/chaos, common/testing/chaos/): kills, Redis
refusing writes, an empty Redis restart, Redis answering BUSY, odd answers, a
MySQL restart and answers trickled past the deadline lose no row, and every
repeat has a window to explain it."""

import re
import subprocess
import sys

import pytest

from common.testing.processes import ROOT, find_server

pytestmark = pytest.mark.integration

SERVERS = ("redis-server", "mariadbd", "mariadb-install-db")
MISSING = [name for name in SERVERS if not find_server(name)]
SHORT_RUN = [
    "--rows",
    "3000",
    "--kill-every",
    "2",
    "--mysql-down-seconds",
    "2",
    "--phase-seconds",
    "2",
    "--time-limit",
    "90",
]
HELD_FAULTS = ("Redis refusing writes", "Redis answering BUSY", "odd answers", "trickled answers")


def table_value(output: str, name: str) -> int:
    match = re.search(rf"^\s+{name}\s+(\d+)\b", output, re.MULTILINE)
    assert match, f"no {name!r} line in the table:\n{output}"
    return int(match.group(1))


@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} to run private servers it may restart")
def test_a_short_chaos_run_loses_nothing_and_explains_every_repeat():
    run = subprocess.run(
        [sys.executable, "-m", "scripts.chaos", *SHORT_RUN], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "chaos: PASS" in run.stdout
    assert table_value(run.stdout, "rows") == 3000
    assert table_value(run.stdout, "lost") == 0
    assert table_value(run.stdout, "still pending") == 0
    assert table_value(run.stdout, "kills") > 0
    assert table_value(run.stdout, "Redis restarts") == 1
    assert table_value(run.stdout, "MySQL restarts") == 1
    for fault in HELD_FAULTS:
        assert table_value(run.stdout, fault) == 1, fault
    assert re.search(r"^\s+repeats by idempotency key\s+\d+\s+in \d+ keys, 0 unexplained", run.stdout, re.MULTILINE)
    assert table_value(run.stdout, "repeats explained") == table_value(run.stdout, "repeats by idempotency key")
