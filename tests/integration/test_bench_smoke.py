"""A tiny run of the benchmark (bench/run.py), to keep the script working.

No timing is asserted: only that it finishes, prints its table and ratios,
proves every row went out once (its exit code) and leaves nothing behind.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import redis

from common.config import parse_database_url
from tests.conftest import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, ROOT, admin_connection

pytestmark = pytest.mark.integration

TINY_RUN = ["--rows", "300", "--scaling-rows", "2000", "--baseline-seconds", "30", "--time-limit", "60"]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
               REDIS_URL=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    return subprocess.run([sys.executable, "bench/run.py", *TINY_RUN, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_nothing_left(stderr: str) -> None:
    """The throwaway database is dropped and the key prefix is empty."""
    database = re.search(r"database (campaign_bench_[0-9a-f]+), Redis (\d+) prefix (bench:[0-9a-f]+:)", stderr)
    assert database, stderr
    name, redis_db, prefix = database.groups()
    base = parse_database_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    with admin_connection(base) as connection, connection.cursor() as cursor:
        assert cursor.execute("SHOW DATABASES LIKE %s", (name,)) == 0
    redis_base = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL).rsplit("/", 1)[0]
    client = redis.Redis.from_url(f"{redis_base}/{redis_db}")
    assert next(client.scan_iter(f"{prefix}*"), None) is None


def test_the_benchmark_runs_on_the_python_mock_and_prints_its_table_and_ratios():
    run = run_bench("--endpoint", "python")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    header = lines[0]
    for column in ("run", "rows", "msg/s", "vs baseline", "p50 ms", "p99 ms", "peak RSS MB", "CPU s/1k"):
        assert column in header
    assert lines[1].startswith("baseline (seed-style)  python mock  ")
    assert lines[2].startswith("project (4 processes)  python mock  ")
    for prefix in ("ratio vs baseline: ", "producer poll ratio: ", "consumer poll ratio: "):
        assert any(line.startswith(prefix) and "x" in line for line in lines), run.stdout
    assert_nothing_left(run.stderr)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_benchmark_runs_on_nginx_when_it_is_installed():
    run = run_bench("--endpoint", "nginx", "--skip-scaling")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[2].startswith("project (4 processes)  nginx  ")
    assert "ratio vs baseline: " in run.stdout


def test_the_benchmark_runs_a_slow_gateway_on_the_async_endpoint():
    run = run_bench("--endpoint", "async", "--latency-ms", "20", "--skip-scaling", "--skip-baseline")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[1].startswith("project (4 processes)  async  ")
    assert_nothing_left(run.stderr)
