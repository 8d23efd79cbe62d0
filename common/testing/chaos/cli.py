"""The command: its options and help, the run's directory and seed, Ctrl-C
and SIGTERM, and the exit code (0 passed, 1 failed, 2 set-up failed, 130
interrupted). `python -m scripts.chaos` (scripts/chaos) calls main."""

import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

from common.delivery.engines import ENGINES
from common.testing.chaos.config import HANG_SECONDS, LEASE_SECONDS, REQUEST_TIMEOUT, Options
from common.testing.chaos.faults import ODD_FAIL_STATUS, TRICKLE_SECONDS
from common.testing.chaos.run import ChaosRun
from common.testing.processes import SetupFailed


def interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--rows", type=click.IntRange(min=1), default=20_000, show_default=True, help="Pending rows to seed and send."
)
@click.option(
    "--kill-every",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds between SIGKILLs of a random process (jittered 0.5x to 1.5x).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Stop the chaos after this many seconds even if rows are still pending.",
)
@click.option(
    "--mysql-down-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="How long MySQL stays down when it is restarted.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.10,
    show_default=True,
    help="Share of sends the mock answers with HTTP 500.",
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help=f"Share of sends the mock never answers (it hangs {HANG_SECONDS:g} s; "
    f"the consumers time out after {REQUEST_TIMEOUT:g} s).",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="Sends in flight per consumer."
)
@click.option(
    "--http-engine",
    type=click.Choice(sorted(ENGINES)),
    default="requests",
    show_default=True,
    help="HTTP_ENGINE of the consumers.",
)
@click.option(
    "--redis-refusals/--no-redis-refusals",
    default=True,
    show_default=True,
    help="Make Redis refuse every write (maxmemory 1, noeviction) for --phase-seconds.",
)
@click.option(
    "--redis-busy/--no-redis-busy",
    default=True,
    show_default=True,
    help="Keep Redis busy in a script, so it answers BUSY, for --phase-seconds.",
)
@click.option(
    "--odd-answers/--no-odd-answers",
    default=True,
    show_default=True,
    help=f"Have the mock answer odd 2xx bodies and {ODD_FAIL_STATUS}s with odd Retry-After texts for --phase-seconds.",
)
@click.option(
    "--trickle/--no-trickle",
    default=True,
    show_default=True,
    help=f"Have the mock trickle every answer over {TRICKLE_SECONDS:g} s, past the request "
    f"deadline, for --phase-seconds.",
)
@click.option(
    "--failover",
    is_flag=True,
    help="Run Redis as a primary, a replica and three sentinels (REDIS_URL=redis+sentinel://...) and "
    "SIGKILL the primary once mid-run, in place of the Redis refusals and the Redis restart: the "
    "processes must follow the promoted replica.",
)
@click.option(
    "--phase-seconds",
    type=click.FloatRange(0.5, LEASE_SECONDS / 2),
    default=3.0,
    show_default=True,
    help="How long each of those faults is held.",
)
@click.option("--seed", type=int, default=None, help="Seed for the run's random choices (printed when not given).")
@click.option("--keep", is_flag=True, help="Keep the run's directory (logs, MariaDB data) even when it passes.")
def main(**choices):
    """Prove the delivery guarantee under faults.

    Runs the four processes on private Redis and MariaDB servers against the
    mock endpoint, which answers 5xx or hangs for some sends. Every few seconds
    a random process is SIGKILLed and restarted, and these faults run one
    after another, spread over the run: Redis refuses writes, restarts empty,
    answers BUSY; the mock answers odd bodies and Retry-Afters; MySQL restarts;
    the mock trickles its answers past the request deadline. Then one table:
    rows, sent, failed, still pending, lost, sends seen by the mock, repeats by
    idempotency key and what explains them, kills, and each fault.

    \b
    Lost: once every process is stopped, a pending row with no job in Redis,
    or a row marked sent that the endpoint never took (no 2xx for its key).

    \b
    A repeat is explained only by a kill of a consumer while the endpoint had
    taken rows of its partition that MySQL did not yet show as sent (a kill
    "in the repeat window"), by the Redis restart for the jobs then leased, or
    by an answer the mock trickled past the deadline (it took the message, the
    consumer saw a timeout and retried with the same key). Exit 0 when
    nothing is lost, every repeat is explained, every fault took and no
    process exited on its own; 1 otherwise; 2 when the services could not be
    set up; 130 when interrupted.
    """
    options = Options(**choices)
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    # Set explicitly: a launcher may have left SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    run = ChaosRun(options, workdir)
    click.echo(f"chaos: seed {options.seed} (--seed {options.seed} repeats these choices), logs in {workdir}/logs")
    code = 1
    try:
        code = 0 if run.execute() else 1
    except SetupFailed as exc:
        click.echo(f"chaos: error: {exc}", err=True)
        code = 2
    except KeyboardInterrupt:
        click.echo("chaos: interrupted; stopping everything", err=True)
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.clean_up()
        if options.keep or code in (1, 2):
            click.echo(f"chaos: kept {workdir} (process logs in {workdir}/logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)
