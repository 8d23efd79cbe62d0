"""A tiny run of the benchmark (bench/run.py) and of the webhook load
(bench/webhooks.py), to keep the scripts working.

No timing is asserted: only that it finishes, prints its table and ratios,
proves every row went out once (its exit code) and leaves nothing behind.
Between them the runs take the reference through all three HTTP engines.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import redis

from common.settings import parse_database_url
from tests.conftest import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, ROOT, admin_connection

pytestmark = pytest.mark.integration

TINY_RUN = ["--rows", "300", "--scaling-rows", "2000", "--baseline-seconds", "30", "--time-limit", "60"]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        DATABASE_URL=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        REDIS_URL=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
    )
    return subprocess.run(
        [sys.executable, "bench/run.py", *TINY_RUN, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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


def is_row(line: str, run: str, endpoint: str, rows: int = 300) -> bool:
    """A table line for this run, on this endpoint, that sent all `rows`."""
    return re.match(rf"{re.escape(run)}\s+{endpoint}\s+{rows:,}\s", line) is not None


def test_the_benchmark_runs_the_reference_baseline_and_project_and_prints_their_ratios():
    run = run_bench("--endpoint", "python", "--http-engine", "requests", "--baseline")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    header = lines[0]
    for column in (
        "run",
        "rows",
        "msg/s",
        "vs reference",
        "p50 ms",
        "p99 ms",
        "peak RSS MB",
        "CPU ms/msg",
        "CPU vs ref",
    ):
        assert column in header
    assert is_row(lines[1], "reference (2 processes)", "python mock")
    assert lines[2].startswith("baseline (seed-style) ")
    assert is_row(lines[3], "project (4 processes)", "python mock")
    assert re.search(r"^ratio vs reference: \d+\.\d{3}x .*target >= 0\.95x \(requests, 0 ms\)", run.stdout, re.M)
    assert re.search(r"^CPU per message: ours \d+\.\d+ ms, reference \d+\.\d+ ms", run.stdout, re.M)
    for prefix in ("ratio vs baseline: ", "producer poll ratio: ", "consumer poll ratio: "):
        assert any(line.startswith(prefix) and "x" in line for line in lines), run.stdout
    assert_nothing_left(run.stderr)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_benchmark_runs_on_nginx_when_it_is_installed():
    run = run_bench("--endpoint", "nginx", "--http-engine", "urllib3", "--skip-scaling")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert is_row(lines[1], "reference (2 processes)", "nginx")
    assert is_row(lines[2], "project (4 processes)", "nginx")
    assert "ratio vs reference: " in run.stdout


def test_the_benchmark_runs_a_slow_gateway_on_the_async_endpoint():
    run = run_bench("--endpoint", "async", "--latency-ms", "20", "--skip-scaling")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert is_row(lines[1], "reference (2 processes)", "async")
    assert is_row(lines[2], "project (4 processes)", "async")
    assert "target >= 0.9x (aiohttp, 20 ms)" in run.stdout
    assert_nothing_left(run.stderr)


@pytest.mark.parametrize("per_request", ["1", "10"])
def test_the_webhook_load_stores_every_acknowledged_event(per_request):
    run = subprocess.run(
        [sys.executable, "bench/webhooks.py", "--rate", "100", "--seconds", "2", "--events-per-request", per_request],
        cwd=ROOT,
        env=dict(
            os.environ,
            DATABASE_URL=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            REDIS_URL=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"sent 200 events in {200 // int(per_request)} requests" in run.stdout
    assert re.search(r"^acknowledged 200 events in [\d.]+ s: [\d,]+ events/s", run.stdout, re.M), run.stdout
    assert re.search(r"^ack latency ms: p50 [\d.]+ \| p95 [\d.]+ \| p99 [\d.]+ \| max [\d.]+$", run.stdout, re.M)
    assert re.search(r"^stored 200 \| lost 0 .*\| all stored [\d.]+ s after the last ack", run.stdout, re.M)
    assert_nothing_left(run.stderr)
