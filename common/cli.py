"""Command lines of the four roles: flags and environment → Settings → run.

Every option has an environment variable (shown in --help); honcho loads
them from `.env`. Expected failures print one line and exit non-zero:
2 for bad configuration, 3 for a service that cannot be reached.
"""

import sys

import click

from common.errors import CampaignError
from common.logs import configure_logging
from common.settings import ENGINE_NAMES, PROVIDER_NAMES, Partition, Settings, check_redis_url, parse_database_url

# Where Redis is: the roles, status, the web service and the webhook receiver.
REDIS_URL_OPTION = click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_envvar=True,
    show_default=True,
    help="redis://host:port/db; TLS: rediss://host:port/db?ssl_ca_certs=/path/ca.pem "
    "(also ssl_certfile, ssl_keyfile; docs/tls.md).",
)
KEY_PREFIX_OPTION = click.option(
    "--key-prefix",
    envvar="KEY_PREFIX",
    default="",
    show_envvar=True,
    help="Prefix for every Redis key; set it when two campaigns share one Redis.",
)

# How many partitions the campaign is split into, for the commands that look at all of them (status, web).
PARTITIONS_OPTION = click.option(
    "--of",
    envvar="PARTITIONS",
    type=click.IntRange(min=1),
    default=2,
    show_envvar=True,
    show_default=True,
    help="Number of partitions (2: odd and even).",
)

# Where the campaign is: every command needs these (the roles, status).
SERVICE_OPTIONS = [
    click.option(
        "--database-url",
        envvar="DATABASE_URL",
        required=True,
        show_envvar=True,
        help="mysql://user:password@host:3306/database; TLS: ?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem "
        "(also ssl-cert, ssl-key; docs/tls.md).",
    ),
    REDIS_URL_OPTION,
    click.option(
        "--table",
        envvar="CAMPAIGN_TABLE",
        default="campaign_master_1",
        show_envvar=True,
        show_default=True,
        help="Campaign table: one row per message.",
    ),
    click.option(
        "--phone-column",
        envvar="PHONE_COLUMN",
        default="column1",
        show_envvar=True,
        show_default=True,
        help="Column holding the phone number.",
    ),
    click.option(
        "--status-column",
        envvar="STATUS_COLUMN",
        default="column3",
        show_envvar=True,
        show_default=True,
        help="Column holding 1 pending / 0 sent / 2 failed.",
    ),
    KEY_PREFIX_OPTION,
]

# A row's own template or text (producers read the columns, consumers send them, the web API fills them).
CONTENT_COLUMN_OPTIONS = [
    click.option(
        "--template-column",
        envvar="TEMPLATE_COLUMN",
        default=None,
        show_envvar=True,
        help="A column holding a row's own template name (rows where it is empty use WHATSAPP_TEMPLATE).",
    ),
    click.option(
        "--text-column",
        envvar="TEXT_COLUMN",
        default=None,
        show_envvar=True,
        help="A column holding a row's own text, sent as it is (empty: the campaign's).",
    ),
]

SHARED_OPTIONS = (
    SERVICE_OPTIONS
    + CONTENT_COLUMN_OPTIONS
    + [
        click.option(
            "--timezone",
            envvar="SEND_TIMEZONE",
            default=None,
            show_envvar=True,
            help="Time zone of --window, --start-at and schedule times, like Asia/Jakarta. Default: the host's.",
        ),
        click.option(
            "--interval",
            "poll_interval",
            envvar="POLL_INTERVAL",
            type=float,
            default=5.0,
            show_envvar=True,
            show_default=True,
            help="Seconds between polls when idle.",
        ),
        click.option(
            "--batch-size",
            envvar="BATCH_SIZE",
            type=int,
            default=500,
            show_envvar=True,
            show_default=True,
            help="Rows read or jobs claimed per round trip.",
        ),
        click.option(
            "--text",
            envvar="WHATSAPP_TEXT",
            default=None,
            show_envvar=True,
            help="Send this text instead of the template (required for waha and gowa); {column2} takes the "
            "row's column2. Producers read it too, to carry those columns in each job.",
        ),
        click.option(
            "--param",
            "params",
            envvar="WHATSAPP_PARAMS",
            multiple=True,
            show_envvar=True,
            help="A column whose value fills the template's next body parameter (repeat it; the variable "
            "takes names separated by spaces). Producers read these columns with each row.",
        ),
        click.option(
            "--once",
            is_flag=True,
            envvar="ONCE",
            show_envvar=True,
            help="Run one cycle and exit (for cron); exit code 0 when it worked, 4 when another copy of "
            "this role and partition is still running (a lock in Redis).",
        ),
        click.option(
            "--exclusive",
            is_flag=True,
            envvar="EXCLUSIVE",
            show_envvar=True,
            help="Take the same lock while running, so a second copy of this role and partition exits "
            "with code 4 (by default several consumers of one partition may share the work).",
        ),
        click.option(
            "--log-level",
            envvar="LOG_LEVEL",
            default="INFO",
            show_envvar=True,
            show_default=True,
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        ),
        click.option(
            "--metrics-port",
            envvar="METRICS_PORT",
            type=click.IntRange(1, 65535),
            default=None,
            show_envvar=True,
            help="Serve Prometheus metrics at http://METRICS_HOST:PORT/metrics.",
        ),
        click.option(
            "--metrics-host",
            envvar="METRICS_HOST",
            default="127.0.0.1",
            show_envvar=True,
            show_default=True,
            help="Address for --metrics-port (0.0.0.0 for every interface).",
        ),
        click.option(
            "--log-format",
            envvar="LOG_FORMAT",
            default="text",
            show_envvar=True,
            show_default=True,
            type=click.Choice(["text", "json"]),
            help="json: one object per line (time, level, role, partition, event, row_id) for log shippers.",
        ),
        click.option(
            "--show-phones",
            is_flag=True,
            envvar="SHOW_PHONES",
            show_envvar=True,
            help="Log phone numbers in full; by default they are masked (62******89).",
        ),
    ]
)

PRODUCER_OPTIONS = [
    click.option(
        "--schedule-column",
        envvar="SCHEDULE_COLUMN",
        default=None,
        show_envvar=True,
        help="A DATETIME column holding each row's send time (in SEND_TIMEZONE); a row is not sent "
        "before it, and an empty one means now.",
    ),
    click.option(
        "--start-at",
        envvar="START_AT",
        default=None,
        show_envvar=True,
        help="Hold the whole campaign until then, like '2026-12-07 09:00' (in SEND_TIMEZONE).",
    ),
    click.option(
        "--valid-for",
        envvar="VALID_FOR",
        default=None,
        show_envvar=True,
        help="A row still unsent this long after its send time (or its first queueing) fails with "
        "'expired' instead of going out late: 3h, 90m, 1h30m. Default: no limit.",
    ),
    click.option(
        "--valid-for-column",
        envvar="VALID_FOR_COLUMN",
        default=None,
        show_envvar=True,
        help="A column holding a row's own validity (3h, 90m); rows where it is empty use VALID_FOR.",
    ),
    click.option(
        "--max-queued",
        envvar="MAX_QUEUED",
        type=int,
        default=50_000,
        show_envvar=True,
        show_default=True,
        help="Stop queueing for this cycle once the partition holds this many jobs.",
    ),
    click.option(
        "--full-scan-interval",
        envvar="FULL_SCAN_INTERVAL",
        type=float,
        default=60.0,
        show_envvar=True,
        show_default=True,
        help="Seconds between reads of every pending row; polls between them read "
        "only rows after the last one queued (and all of them after Redis "
        "lost the queue).",
    ),
]

CONSUMER_OPTIONS = [
    click.option(
        "--whatsapp-url",
        envvar=["WHATSAPP_ENDPOINTS", "WHATSAPP_URL"],
        default="http://localhost:8080/test_camp",
        show_envvar=True,
        show_default=True,
        help="Endpoint every message is POSTed to. Several, separated by commas, are several senders: "
        "sends rotate among the healthy ones. So do lists in WHATSAPP_TOKEN, WAHA_SESSION, "
        "WAHA_API_KEY, META_PHONE_NUMBER_ID, GOWA_USERNAME, GOWA_PASSWORD and RATE (one value "
        "for all senders, or one per sender).",
    ),
    click.option(
        "--whatsapp-token",
        envvar="WHATSAPP_TOKEN",
        default=None,
        show_envvar=True,
        help="Bearer token for the endpoint (optional; never logged).",
    ),
    click.option(
        "--rate",
        envvar="RATE",
        default=None,
        show_envvar=True,
        help="Most sends per sender, shared by every consumer on every host: 80/s, 20/min, 500/h. "
        "Sends are spread evenly, never in bursts. Default: no limit.",
    ),
    click.option(
        "--jitter",
        envvar="JITTER",
        type=float,
        default=0.0,
        show_envvar=True,
        show_default=True,
        help="Seconds: each gap between two sends to one sender grows by a random 0..JITTER, so "
        "the spacing looks human (on average JITTER/2 slower).",
    ),
    click.option(
        "--window",
        envvar="SEND_WINDOW",
        default=None,
        show_envvar=True,
        help="Hours sends may start, like 09:00-18:00 (22:00-06:00 spans midnight). Outside it "
        "nothing is claimed; rows wait. Default: any time.",
    ),
    click.option(
        "--breaker-failures",
        envvar="BREAKER_FAILURES",
        type=int,
        default=10,
        show_envvar=True,
        show_default=True,
        help="Consecutive failed sends (5xx, 429, timeouts) that stop a sender for "
        "a cool-down. A refused credential stops it at once.",
    ),
    click.option(
        "--breaker-cooldown",
        envvar="BREAKER_COOLDOWN",
        type=float,
        default=30.0,
        show_envvar=True,
        show_default=True,
        help="Seconds a stopped sender rests before a few trial sends.",
    ),
    click.option(
        "--breaker-successes",
        envvar="BREAKER_SUCCESSES",
        type=int,
        default=3,
        show_envvar=True,
        show_default=True,
        help="Trial sends that must go through before a stopped sender is used again.",
    ),
    click.option(
        "--sticky-sender",
        is_flag=True,
        envvar="STICKY_SENDER",
        show_envvar=True,
        help="Send every message for one phone through the same sender, chosen by consistent hashing "
        "(adding a sender moves about 1/N of the phones). While that sender is stopped, its rows wait.",
    ),
    click.option(
        "--sticky-fallback",
        is_flag=True,
        envvar="STICKY_FALLBACK",
        show_envvar=True,
        help="With --sticky-sender: while a phone's sender is stopped, use the next one and remember "
        "it for that phone from then on.",
    ),
    click.option(
        "--daily-limit",
        envvar="DAILY_LIMIT",
        default=None,
        show_envvar=True,
        help="Most unique recipients per sender in a rolling 24 hours, counted across every consumer "
        "(Meta's tiers: 250, 1000, 10000, 100000); a list gives each sender its own. Rows over the "
        "limit wait for a free slot. Default: no limit.",
    ),
    click.option(
        "--template",
        envvar="WHATSAPP_TEMPLATE",
        default="hello_world",
        show_envvar=True,
        show_default=True,
        help="Message template name.",
    ),
    click.option(
        "--language",
        envvar="WHATSAPP_LANGUAGE",
        default="en_US",
        show_envvar=True,
        show_default=True,
        help="Template language code.",
    ),
    click.option(
        "--concurrency",
        envvar="CONCURRENCY",
        type=int,
        default=16,
        show_envvar=True,
        show_default=True,
        help="Sends in flight at once.",
    ),
    click.option(
        "--max-attempts",
        envvar="MAX_ATTEMPTS",
        type=int,
        default=5,
        show_envvar=True,
        show_default=True,
        help="Attempts before a row is marked failed (column3 = 2).",
    ),
    click.option(
        "--lease-seconds",
        envvar="LEASE_SECONDS",
        type=float,
        default=60.0,
        show_envvar=True,
        show_default=True,
        help="How long a claimed job is ours before another consumer may take it.",
    ),
    click.option(
        "--timeout",
        "request_timeout",
        envvar="WHATSAPP_TIMEOUT",
        type=float,
        default=3.0,
        show_envvar=True,
        show_default=True,
        help="Seconds a request may take in all: connect, send and the whole answer (a trickling "
        "answer is cut off). A graceful stop waits at most this long for sends in flight.",
    ),
    click.option(
        "--http-engine",
        envvar="HTTP_ENGINE",
        type=click.Choice(ENGINE_NAMES),
        default="requests",
        show_envvar=True,
        show_default=True,
        help="HTTP client. requests honours HTTPS_PROXY; urllib3 and aiohttp ignore proxies and "
        "need about 1/2 and 1/5 of its CPU per send (aiohttp: one asyncio loop, no thread "
        "per send). Use aiohttp when sending thousands of messages a second.",
    ),
    click.option(
        "--retry-delay",
        envvar="RETRY_DELAY",
        type=float,
        default=5.0,
        show_envvar=True,
        show_default=True,
        help="First retry after this many seconds, doubling per attempt (with jitter).",
    ),
    click.option(
        "--provider",
        envvar="WHATSAPP_PROVIDER",
        type=click.Choice(PROVIDER_NAMES),
        default="webhook",
        show_envvar=True,
        show_default=True,
        help="Gateway dialect: webhook (POST to WHATSAPP_URL), meta (Cloud API), waha, gowa "
        "(WHATSAPP_URL is then the gateway's base URL).",
    ),
    click.option(
        "--default-region",
        envvar="DEFAULT_REGION",
        default=None,
        show_envvar=True,
        help="Country (ISO code, e.g. ID) of national phone numbers such as 0812...; without it they "
        "fail. Numbers with a country code need none.",
    ),
    click.option(
        "--meta-base-url",
        envvar="META_BASE_URL",
        default="https://graph.facebook.com",
        show_envvar=True,
        show_default=True,
        help="meta: Graph API base URL.",
    ),
    click.option(
        "--meta-api-version",
        envvar="META_API_VERSION",
        default="v21.0",
        show_envvar=True,
        show_default=True,
        help="meta: Graph API version.",
    ),
    click.option(
        "--meta-phone-number-id",
        envvar="META_PHONE_NUMBER_ID",
        default=None,
        show_envvar=True,
        help="meta: the sending phone number's id (WHATSAPP_TOKEN is the access token).",
    ),
    click.option(
        "--waha-session",
        envvar="WAHA_SESSION",
        default="default",
        show_envvar=True,
        show_default=True,
        help="waha: session name; default,marketing,support makes three senders.",
    ),
    click.option(
        "--waha-api-key", envvar="WAHA_API_KEY", default=None, show_envvar=True, help="waha: X-Api-Key (never logged)."
    ),
    click.option(
        "--gowa-username", envvar="GOWA_USERNAME", default=None, show_envvar=True, help="gowa: HTTP Basic user."
    ),
    click.option(
        "--gowa-password",
        envvar="GOWA_PASSWORD",
        default=None,
        show_envvar=True,
        help="gowa: HTTP Basic password (never logged).",
    ),
]

PARTITION_OPTIONS = [
    click.option(
        "--partition",
        "index",
        envvar="PARTITION",
        type=int,
        required=True,
        show_envvar=True,
        help="This process takes rows with id % N == K: K.",
    ),
    click.option(
        "--of", "of", envvar="PARTITIONS", type=int, required=True, show_envvar=True, help="Number of partitions N."
    ),
]


def environment_variables() -> set[str]:
    """Every variable the roles read: tools that start roles with settings of
    their own (the benchmark) keep the caller's out."""
    names: set[str] = set()
    for option in SHARED_OPTIONS + PRODUCER_OPTIONS + CONSUMER_OPTIONS + PARTITION_OPTIONS:
        envvar = option(lambda: None).__click_params__[0].envvar  # type: ignore[attr-defined]
        names.update([envvar] if isinstance(envvar, str) else envvar)
    return names


def build_settings(options: dict, partition: Partition) -> Settings:
    options = dict(options)
    database = parse_database_url(options.pop("database_url"))
    check_redis_url(options["redis_url"])
    options.pop("log_level")
    options.pop("log_format")
    return Settings(database=database, partition=partition, **options)


def make_command(role: str, run, extra_options: list, index: int | None = None, of: int | None = None):
    """A click command for `role` ("producer" or "consumer"). With `index` and
    `of` given (the odd/even presets) the partition is fixed, not an option."""
    preset = index is not None

    def command(**options):
        try:
            partition = Partition(options.pop("index", index), options.pop("of", of))
            configure_logging(options["log_level"], options["log_format"], role, partition)
            run(build_settings(options, partition))
        except CampaignError as exc:
            click.echo(f"{role}: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    doc = {
        "producer": "Queue the pending rows of one partition of the campaign table into Redis.",
        "consumer": "Send the queued jobs of one partition to the WhatsApp endpoint and record the outcome.",
    }[role]
    if preset:
        doc += f" This preset handles partition {index} of {of} (ids with id % {of} == {index})."
    command.__doc__ = doc
    for option in reversed(SHARED_OPTIONS + extra_options + ([] if preset else PARTITION_OPTIONS)):
        command = option(command)
    return click.command(name=role, context_settings={"max_content_width": 100})(command)
