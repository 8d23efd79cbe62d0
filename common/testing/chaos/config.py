"""The run's fixed numbers and names, and the options it is given: one place,
since the roles' environment, the faults, the verdict and --help all read them."""

from dataclasses import dataclass

TABLE = "campaign_master_1"
DATABASE = "campaign"
PRODUCERS = ["producers.odd", "producers.even"]
CONSUMER_PARTITION = {"consumers.odd": 1, "consumers.even": 0}  # id % 2 of the rows each one sends
ROLES = PRODUCERS + list(CONSUMER_PARTITION)

# Role settings. Hung sends (the mock hangs HANG_SECONDS) end by the request
# timeout; the lease is the project's minimum, 3 x that timeout, so a killed
# consumer's jobs come back soon. With 15 % faults a row fails only after
# MAX_ATTEMPTS faults in a row, which practically never happens.
REQUEST_TIMEOUT = 2.0
LEASE_SECONDS = 6.0
HANG_SECONDS = 5.0
RETRY_DELAY = 0.2
MAX_ATTEMPTS = 20
BATCH_SIZE = 500
POLL_INTERVAL = 0.5
# While answers trickle every send fails: the breaker stops the sender after a
# few in a row, and its default 30 s rest would stall the run for nothing.
BREAKER_COOLDOWN = 2.0

TICK = 0.25  # seconds between looks at the run
REPORT_EVERY = 10.0
MAX_RESTART_PAUSE = 1.0  # a killed process comes back after 0 to this many seconds
EXIT_RESTART_PAUSE = 1.0  # a process that exited on its own comes back after this
REDIS_DOWN_SECONDS = 1.0
# After a SIGKILL the mock may still be writing answers it had decided on; they count as delivered.
ANSWER_GRACE = 0.3
SETTLE_QUIET = 30.0  # the run has settled when nothing changed for this long...
SETTLE_LIMIT = 180.0  # ...or after this long without chaos
STOP_GRACE = 15.0
ROLE_START_SECONDS = 5.0  # a role this old has its signal handlers
# Variables the roles need from this environment; everything else they get is
# set here, so nothing in .env can point them at a real campaign.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


@dataclass
class Options:
    """The command line's choices (see cli.py)."""

    rows: int
    kill_every: float
    time_limit: float
    mysql_down_seconds: float
    fail_rate: float
    timeout_rate: float
    concurrency: int
    http_engine: str
    redis_refusals: bool
    redis_busy: bool
    odd_answers: bool
    trickle: bool
    failover: bool
    phase_seconds: float
    seed: int | None
    keep: bool
