"""How exactly is a shared rate limit kept? Four consumer processes (or
--consumers) send through one sender at --rate for --seconds; the mock
endpoint timestamps every send, and the count in the window is compared with
rate x seconds. Run it with `.venv/bin/python bench/rate.py`.
"""

import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from bench import BenchFailed  # noqa: E402
from bench.children import Child, stop_all  # noqa: E402
from bench.run import PROJECT_VARIABLES, resolve_url  # noqa: E402
from bench.services import BenchDatabase, RedisNamespace  # noqa: E402
from common.delivery.engines import ENGINES  # noqa: E402
from common.errors import CampaignError  # noqa: E402
from common.testing.mock_gateway import MockWhatsApp  # noqa: E402
from common.timing import parse_rate  # noqa: E402


def measure(options: dict) -> None:
    per_second = parse_rate(options["rate"])
    seconds, consumers = options["seconds"], options["consumers"]
    expected = per_second * seconds
    db = BenchDatabase(resolve_url(options["database_url"], "DATABASE_URL"))
    namespace = RedisNamespace(resolve_url(options["redis_url"], "REDIS_URL"))
    log_dir = Path(tempfile.mkdtemp(prefix="campaign-rate-"))
    children = []
    try:
        db.seed(pending=int(expected * 1.5) + 100)
        with MockWhatsApp() as mock:
            env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
            env.update(
                DATABASE_URL=db.url,
                REDIS_URL=namespace.url,
                KEY_PREFIX=namespace.prefix,
                WHATSAPP_URL=f"{mock.url}/test_camp",
                RATE=options["rate"],
                PARTITIONS=str(consumers),
                CONCURRENCY=str(options["concurrency"]),
                HTTP_ENGINE=options["http_engine"],
                POLL_INTERVAL="0.5",
                LOG_LEVEL="WARNING",
                PYTHONUNBUFFERED="1",
            )
            for k in range(consumers):
                for role in ("producers", "consumers"):
                    children.append(Child.python_module(f"{role}-{k}", role, [], dict(env, PARTITION=str(k)), log_dir))
            deadline = time.monotonic() + 60
            while not mock.stats()["delivered"]:
                if time.monotonic() > deadline:
                    raise BenchFailed(f"no send within 60 s (logs: {log_dir})")
                time.sleep(0.05)
            click.echo(
                f"rate: sending at {options['rate']} through one sender from {consumers} consumers "
                f"for {seconds:g} s ...",
                err=True,
            )
            time.sleep(seconds + 1)
            usages = stop_all(children)
            times = mock.delivery_times()
            stats = mock.stats()
        failed = [f"{u.name} exited {u.exit_code}" for u in usages if u.exit_code != 0]
        if failed or stats["duplicates"]:
            raise BenchFailed(f"{', '.join(failed) or 'duplicates at the endpoint'} (logs: {log_dir})")
    finally:
        stop_all(children)
        namespace.clear()
        db.drop()
    in_window = [t for t in times if t < times[0] + seconds]
    error = (len(in_window) - expected) / expected
    gaps = [(b - a) * 1000 for a, b in zip(in_window, in_window[1:])]
    click.echo(
        f"rate {options['rate']} ({per_second:g}/s) x {seconds:g} s, {consumers} consumer processes, "
        f"HTTP_ENGINE {options['http_engine']}"
    )
    click.echo(
        f"expected {expected:,.0f} sends; measured {len(in_window):,} "
        f"(ratio {len(in_window) / expected:.4f}, error {error:+.2%}); "
        f"within ±5 %: {'yes' if abs(error) <= 0.05 else 'NO'}"
    )
    click.echo(
        f"gaps between sends: median {median(gaps):.1f} ms (ideal {1000 / per_second:.1f}), "
        f"shortest {min(gaps):.1f} ms; duplicates {stats['duplicates']}"
    )


@click.command(context_settings={"max_content_width": 100})
@click.option("--rate", default="50/s", show_default=True, help="RATE of the one sender.")
@click.option("--seconds", type=click.FloatRange(min=1), default=60.0, show_default=True)
@click.option(
    "--consumers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Consumer processes (partitions 0..N-1 of N), each with its producer.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--http-engine", type=click.Choice(sorted(ENGINES)), default="requests", show_default=True)
@click.option("--database-url", envvar="DATABASE_URL", show_envvar=True, help="Default: from .env.")
@click.option("--redis-url", envvar="REDIS_URL", show_envvar=True, help="Default: from .env.")
def main(**options):
    """Measure the accuracy of the shared per-sender rate limit over a real run."""
    try:
        measure(options)
    except CampaignError as exc:
        click.echo(f"rate: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
