"""The benchmark of issue 4: is a campaign limited by the gateway, or by us?

It seeds a throwaway database, starts a fast endpoint, sends the rows with
the reference (bench/reference.py: the minimal pipeline, on the same HTTP
engine), optionally the seed's way (bench/baseline.py), and then with the
project's four processes, re-seeding in between, and prints one table: msg/s,
the ratio to the reference, send latency, peak RSS and CPU per message. Then
the scaling checks (bench/scaling.py).
Targets missed are reported, not errors; the exit code is non-zero only when
a run broke or did not send every row exactly once. See bench/README.md.
"""

import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

# `python bench/run.py` puts bench/ on sys.path, not the repository root that
# holds the `bench` and `common` packages; `python -m bench.run` needs no help.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from bench import BenchFailed, endpoints, reference, report  # noqa: E402
from bench.children import Child, stop_all  # noqa: E402
from bench.machine import Interval, Meter  # noqa: E402
from bench.report import RunResult  # noqa: E402
from bench.scaling import SCALING_PENDING, Checks  # noqa: E402
from bench.services import BenchDatabase, RedisNamespace  # noqa: E402
from common.cli import environment_variables  # noqa: E402
from common.delivery.engines import ENGINES  # noqa: E402
from common.errors import CampaignError, ConfigError  # noqa: E402

ROLES = ["producers.odd", "producers.even", "consumers.odd", "consumers.even"]
# The project's settings: none may leak in from the caller's environment or .env.
PROJECT_VARIABLES = environment_variables()
WATCH_EVERY = 0.1  # seconds between "anything still pending?" queries
# A producer's page read just before its rows were sent queues them again; the
# consumers drop such stale jobs unsent on their next claim. Time to do so
# after the last row is sent, before the processes are stopped (not timed).
SETTLE_SECONDS = 15.0


def dotenv(name: str) -> str | None:
    """A value from the checkout's .env (what scripts/setup writes), for a bare `python bench/run.py`."""
    path = ROOT / ".env"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip() or None
    return None


class Bench:
    def __init__(self, options: dict, db: BenchDatabase, namespace: RedisNamespace, work_dir: Path):
        self.o = options
        self.db = db
        self.namespace = namespace
        self.work_dir = work_dir
        self.endpoint_kind = endpoints.choose(options["endpoint"], options["latency_ms"])
        base = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
        self.env = dict(
            base,
            DATABASE_URL=db.url,
            REDIS_URL=namespace.url,
            KEY_PREFIX=namespace.prefix,
            CONCURRENCY=str(options["concurrency"]),
            BATCH_SIZE=str(options["batch_size"]),
            POLL_INTERVAL=str(options["poll_interval"]),
            HTTP_ENGINE=options["http_engine"],
            # The reference's deadline: with 3 s (our default), a request that waits
            # longer for a thread under full load times out and is sent again with
            # its key (the documented repeat), which this run counts as a duplicate.
            WHATSAPP_TIMEOUT=str(reference.TIMEOUT),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        self.runs = 0
        self.meter = Meter([db.target.port if not db.target.unix_socket else 0, urlsplit(namespace.url).port or 6379])

    def start_endpoint(self, log_dir: Path):
        return endpoints.start(self.endpoint_kind, self.o["latency_ms"], log_dir, log_dir, self.env)

    def log_dir(self, name: str) -> Path:
        self.runs += 1
        path = self.work_dir / f"{self.runs}-{name}"
        path.mkdir()
        return path

    def measure(self, name: str, start_children, time_limit: float, cap: bool, settled=None) -> RunResult:
        """Seed the rows, start the endpoint and `start_children(env, log_dir)`, wait
        until no row is pending (or `time_limit` passes: the end of a capped run,
        else a failure) and, untimed, until `settled()`; then stop everything and
        check every row went out once."""
        self.db.seed(pending=self.o["rows"])
        self.namespace.clear()
        log_dir = self.log_dir(name.split()[0])
        endpoint = self.start_endpoint(log_dir)
        children: list[Child] = []
        try:
            before = self.meter.snapshot()
            started = time.monotonic()
            children = start_children(dict(self.env, WHATSAPP_URL=endpoint.url), log_dir)
            while self.db.has_pending():
                crashed = [c for c in children if not c.running()]
                if crashed:
                    raise BenchFailed(f"{name}: {crashed[0].name} exited early: {crashed[0].log_tail()}")
                if time.monotonic() - started > time_limit:
                    if cap:
                        break
                    raise BenchFailed(f"{name}: rows still pending after {time_limit:g} s (--time-limit)")
                time.sleep(WATCH_EVERY)
            seconds = time.monotonic() - started
            cpu = Interval.between(before, self.meter.snapshot())
            deadline = time.monotonic() + SETTLE_SECONDS
            while settled and not settled() and time.monotonic() < deadline:
                time.sleep(WATCH_EVERY)
            usages = stop_all(children)
        except BaseException:
            stop_all(children)
            endpoint.child.stop()
            raise
        endpoint_usage, deliveries = endpoint.finish()
        ours = sum(u.cpu_seconds for u in usages) + endpoint_usage.cpu_seconds + (cpu.servers or 0)
        others = max(cpu.busy_seconds - ours, 0) / seconds
        counts = self.db.counts()
        sent = counts.get(0, 0)
        failed_exits = [f"{u.name} exited {u.exit_code}" for u in usages if u.exit_code != 0]
        if failed_exits:
            raise BenchFailed(f"{name}: {', '.join(failed_exits)} (logs: {log_dir})")
        if counts.get(2, 0) or (not cap and counts.get(1, 0)):
            raise BenchFailed(f"{name}: rows by status at the end: {counts} (logs: {log_dir})")
        if deliveries.delivered != sent or deliveries.duplicates:
            raise BenchFailed(
                f"{name}: {sent:,} rows marked sent, but the endpoint delivered "
                f"{deliveries.delivered:,} with {deliveries.duplicates:,} duplicates"
            )
        return RunResult(name, endpoint.name, sent, seconds, [], usages, endpoint_usage, cpu.servers, cpu.busy, others)

    def baseline(self) -> RunResult:
        latency_files = []

        def start(env: dict, log_dir: Path) -> list[Child]:
            children = []
            for index, side in ((1, "odd"), (0, "even")):
                latency_files.append(log_dir / f"baseline-{side}.ms")
                children.append(
                    Child.python_module(
                        f"baseline.{side}",
                        "bench.baseline",
                        ["--partition", str(index), "--of", "2", "--latencies", str(latency_files[-1])],
                        env,
                        log_dir,
                    )
                )
            return children

        result = self.measure("baseline (seed-style)", start, self.o["baseline_seconds"], cap=True)
        return replace(result, send_ms=[float(v) for path in latency_files for v in path.read_text().split()])

    def reference(self) -> RunResult:
        latency_files = []

        def start(env: dict, log_dir: Path) -> list[Child]:
            children = []
            for index, side in ((1, "odd"), (0, "even")):
                latency_files.append(log_dir / f"reference-{side}.ms")
                children.append(
                    Child.python_module(
                        f"reference.{side}",
                        "bench.reference",
                        ["--partition", str(index), "--of", "2", "--latencies", str(latency_files[-1])],
                        env,
                        log_dir,
                    )
                )
            return children

        result = self.measure("reference (2 processes)", start, self.o["time_limit"], cap=False)
        self.check_no_jobs_left("reference")
        return replace(result, send_ms=[float(v) for path in latency_files for v in path.read_text().split()])

    def check_no_jobs_left(self, name: str) -> None:
        left = self.namespace.keys("job:*")
        if left:
            raise BenchFailed(f"{name}: {left} jobs still queued after the last row was sent")

    def project(self) -> RunResult:
        def start(env: dict, log_dir: Path) -> list[Child]:
            return [Child.python_module(role, role, [], env, log_dir) for role in ROLES]

        def settled() -> bool:
            return self.namespace.keys("job:*") == 0

        result = self.measure("project (4 processes)", start, self.o["time_limit"], cap=False, settled=settled)
        self.check_no_jobs_left("project")
        return replace(result, send_ms=self.db.attempt_latencies_ms())

    def scaling(self, checks: Checks):
        producer = checks.producer_scaling(self.o["scaling_rows"])
        consumer = checks.consumer_scaling(self.o["scaling_rows"])
        self.namespace.clear()
        return producer, consumer

    def memory(self, checks: Checks):
        log_dir = self.log_dir("memory")
        endpoint = self.start_endpoint(log_dir)
        try:
            return checks.consumer_memory(
                self.o["memory_jobs"], self.o["memory_seconds"], dict(self.env, WHATSAPP_URL=endpoint.url), log_dir
            )
        finally:
            endpoint.finish()
            self.namespace.clear()


def resolve_url(value: str | None, name: str) -> str:
    value = value or dotenv(name)
    if not value:
        raise ConfigError(f"{name} is not set (run scripts/setup, which writes .env, or export it)")
    return value


def run(options: dict) -> None:
    database_url = resolve_url(options["database_url"], "DATABASE_URL")
    redis_url = resolve_url(options["redis_url"], "REDIS_URL")
    namespace = RedisNamespace(redis_url)
    db = BenchDatabase(database_url)
    work_dir = Path(tempfile.mkdtemp(prefix="campaign-bench-"))
    finished = False
    try:
        bench = Bench(options, db, namespace, work_dir)
        latency = options["latency_ms"]
        click.echo(
            f"bench: {options['rows']:,} rows, endpoint latency {latency:g} ms, endpoint "
            f"{bench.endpoint_kind}, HTTP_ENGINE {options['http_engine']}, concurrency {options['concurrency']}, "
            f"batch {options['batch_size']}; "
            f"database {db.target.database}, Redis {namespace.url.rsplit('/', 1)[-1]} "
            f"prefix {namespace.prefix}",
            err=True,
        )
        if bench.endpoint_kind == "python" and latency == 0:
            click.echo(
                "bench: note: the Python mock serves about 2,000-3,000 req/s and may cap this run; "
                "with nginx installed, --endpoint auto uses it",
                err=True,
            )
        reference = baseline = None
        if not options["skip_reference"]:
            click.echo("bench: reference (2 processes) ...", err=True)
            reference = bench.reference()
        if options["baseline"]:
            click.echo("bench: baseline (seed-style) ...", err=True)
            baseline = bench.baseline()
        click.echo("bench: project (4 processes) ...", err=True)
        project = bench.project()
        checks = Checks(db, namespace, options["batch_size"])
        producer = consumer = memory = None
        if not options["skip_scaling"]:
            click.echo("bench: scaling checks ...", err=True)
            producer, consumer = bench.scaling(checks)
        if options["memory_check"]:
            click.echo("bench: memory check ...", err=True)
            memory = bench.memory(checks)
        results = [r for r in (reference, baseline, project) if r]
        click.echo(report.table(results, reference))
        for line in report.breakdown(results):
            click.echo(line)
        for line in report.contention(results, os.cpu_count() or 1):
            click.echo(line)
        for line in report.reference_targets(project, reference, latency, options["http_engine"]):
            click.echo(line)
        for line in report.targets(project, baseline, latency):
            click.echo(line)
        for line in report.scaling(
            producer, consumer, options["scaling_rows"], options["scaling_rows"], SCALING_PENDING
        ):
            click.echo(line)
        click.echo(report.memory(memory))
        finished = True
    finally:
        namespace.clear()
        db.drop()
        if finished:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            click.echo(f"bench: logs kept in {work_dir}", err=True)


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--rows", type=click.IntRange(min=1), default=100_000, show_default=True, help="Pending rows seeded for each run."
)
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Endpoint delay per send."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="CONCURRENCY of each consumer; raise it with latency (e.g. 500 at 200 ms).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="BATCH_SIZE of every process, the reference's and the baseline's included.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="POLL_INTERVAL of the four processes.",
)
@click.option(
    "--http-engine",
    type=click.Choice(sorted(ENGINES)),
    default="aiohttp",
    show_default=True,
    help="HTTP_ENGINE of the consumers, and the engine of the reference.",
)
@click.option(
    "--endpoint",
    type=click.Choice(["auto", "nginx", "async", "python"]),
    default="auto",
    show_default=True,
    help="auto: nginx for 0 ms when installed, else bench/async_endpoint.py; python is the project's threaded mock.",
)
@click.option("--skip-reference", is_flag=True, help="Run only the project's processes (no ratio).")
@click.option("--baseline", is_flag=True, help="Also run the seed-style baseline (issue 4's ratio).")
@click.option(
    "--baseline-seconds",
    type=click.FloatRange(min=1),
    default=180.0,
    show_default=True,
    help="Stop the baseline after this long and rate what it sent (it needs ~100 s per 1,000 rows at 200 ms).",
)
@click.option("--skip-scaling", is_flag=True, help="Skip the producer and consumer poll scaling checks.")
@click.option(
    "--scaling-rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Processed rows (producer check) and unrelated Redis keys (consumer check).",
)
@click.option("--memory-check", is_flag=True, help="Also measure a consumer's RSS with --memory-jobs queued.")
@click.option("--memory-jobs", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option(
    "--memory-seconds",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="How long the memory-check consumer runs before SIGTERM.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Fail the reference's or the project's run if rows are still pending after this many seconds.",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    show_envvar=True,
    help="Credentials and server to use (default: from .env); the benchmark works in its own "
    "throwaway database campaign_bench_<hex>.",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    show_envvar=True,
    help="Redis to use (default: from .env); the benchmark takes an empty database number and its own key prefix.",
)
def main(**options):
    """Measure the project's four processes against the reference (a minimal
    pipeline on the same HTTP engine) on a fast local endpoint, then check that polls do not grow with processed rows or
    unrelated Redis keys. Exit 0 when every run sent every row exactly once."""
    try:
        run(options)
    except CampaignError as exc:
        click.echo(f"bench: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
