"""Settings: one frozen object, built once at start-up from flags and environment.

Nothing else in the project reads the environment; every part gets what it
needs from here. Validation happens once, so a bad value fails at start-up
with one line instead of deep inside a loop.
"""

import re
import ssl
import string
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from common.errors import ConfigError
from common.phones import check_region
from common.queue.sentinel import TLS_OPTIONS, is_sentinel_url, parse_sentinel_url
from common.timing import SendWindow, moment, parse_duration, parse_rate, zone_of

# The HTTP engines and gateway dialects by name: settings check the names
# without importing the HTTP clients (tests hold these to common.delivery).
ENGINE_NAMES = ("aiohttp", "requests", "urllib3")
PROVIDER_NAMES = ("gowa", "meta", "waha", "webhook")

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def identifier(value: str, what: str) -> str:
    """Return `value` if it is a plain SQL identifier; table and column names are
    pasted into queries, so anything else is refused rather than quoted."""
    if not IDENTIFIER.fullmatch(value or ""):
        raise ConfigError(f"{what} {value!r} is not a plain identifier (letters, digits, _; at most 64)")
    return value


def placeholders(text: str | None) -> list[str]:
    """Columns a text message names as {column}, in order; each must be a plain column name."""
    names = []
    for _, name, _, _ in string.Formatter().parse(text or ""):
        if name is not None and name not in names:
            names.append(identifier(name, "placeholder in WHATSAPP_TEXT"))
    return names


# Settings that may list one value per sender, separated by commas, and the
# variable each is read from. One value serves every sender.
PER_SENDER = {
    "whatsapp_url": "WHATSAPP_ENDPOINTS",
    "whatsapp_token": "WHATSAPP_TOKEN",
    "meta_phone_number_id": "META_PHONE_NUMBER_ID",
    "waha_session": "WAHA_SESSION",
    "waha_api_key": "WAHA_API_KEY",
    "gowa_username": "GOWA_USERNAME",
    "gowa_password": "GOWA_PASSWORD",
    "rate": "RATE",
    "daily_limit": "DAILY_LIMIT",
}


def listed(value: str | None) -> list[str | None]:
    return [part.strip() for part in value.split(",")] if value else [value]


# How far a MySQL client checks the server, by the names `mysql --ssl-mode` uses.
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# DATABASE_URL's query options; ssl-ca and ssl_ca are the same option.
DATABASE_URL_OPTIONS = ("unix_socket", "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key")
# REDIS_URL's query options: redis-py's own names, which its from_url reads.
REDIS_URL_OPTIONS = (
    "db",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "health_check_interval",
    "client_name",
    *TLS_OPTIONS,
)
REDIS_CERT_REQS = ("none", "optional", "required")

# Handshake failures that are an outage (the server went away mid-handshake),
# not a certificate or option the settings got wrong.
TLS_OUTAGES = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
# OpenSSL's reasons for the refusals settings cause, in words.
TLS_REASONS = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS on that port",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server wants a client certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake (does it want a client certificate?)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust our client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server refused our client certificate",
}


def tls_context(what: str, verify: bool, check_hostname: bool, ca=None, cert=None, key=None) -> ssl.SSLContext:
    """A client TLS context. A file that is missing, unreadable or not PEM
    fails here, with one line naming it, not at the first connection, where
    it would look like an outage. `what` names the setting (REDIS_URL)."""
    context = ssl.create_default_context()
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    try:
        if ca:
            shown = f"the CA {ca}"
            context.load_verify_locations(cafile=ca)
        if cert:
            shown = f"the client certificate {cert}" + (f" with the key {key}" if key else "")
            context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"{what}: cannot use {shown} ({getattr(exc, 'reason', None) or exc})") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {shown} ({exc.strerror or exc})") from None
    return context


def tls_refusal(exc: BaseException | None) -> str | None:
    """Why a TLS handshake was refused, in words, when `exc` (or an error it
    wraps: redis-py and pymysql keep the ssl error as context) says it was for
    a reason the settings can fix: a certificate the CA does not vouch for, a
    host name it does not name, a server that wants a client certificate or
    speaks no TLS. None otherwise (a reset mid-handshake is an outage)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = getattr(exc, "verify_message", None) or str(exc)
            if "mismatch" in why:
                return f"the server's certificate does not name the host in the URL ({why})"
            return f"the server's certificate is not signed by the CA we trust ({why})"
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, TLS_OUTAGES):
            reason = getattr(exc, "reason", None) or ""
            return TLS_REASONS.get(reason, f"the TLS handshake failed: {reason or exc}")
        exc = getattr(exc, "original_exception", None) or exc.__cause__ or exc.__context__
    return None


@dataclass(frozen=True)
class MySQLTarget:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    unix_socket: str | None = None
    # TLS, as DATABASE_URL's ?ssl-mode=...&ssl-ca=... give it (docs/tls.md).
    ssl_mode: str = "PREFERRED"
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None

    def __post_init__(self):
        if self.ssl_mode not in SSL_MODES:
            raise ConfigError(f"DATABASE_URL ssl-mode must be one of {', '.join(SSL_MODES)}, got {self.ssl_mode!r}")
        files = [name for name in ("ssl_ca", "ssl_cert", "ssl_key") if getattr(self, name)]
        named = ", ".join(name.replace("_", "-") for name in files)
        if files and self.ssl_mode in ("DISABLED", "PREFERRED"):
            raise ConfigError(
                f"DATABASE_URL gives {named} with ssl-mode={self.ssl_mode}: use REQUIRED or a VERIFY_ mode"
            )
        # A CA that would be ignored is a check the user thinks happens.
        if self.ssl_ca and self.ssl_mode == "REQUIRED":
            raise ConfigError("DATABASE_URL gives ssl-ca with ssl-mode=REQUIRED, which checks nothing: use VERIFY_CA")
        if self.ssl_key and not self.ssl_cert:
            raise ConfigError("DATABASE_URL gives ssl-key without ssl-cert")

    def describe(self) -> str:
        """Where we connect, without the password, for log lines and errors."""
        where = self.unix_socket or f"{self.host}:{self.port}"
        tls = f"?ssl-mode={self.ssl_mode}" if self.ssl_mode != "PREFERRED" else ""
        return f"mysql://{self.user}@{where}/{self.database}{tls}"

    def query(self) -> str:
        """The query part of a DATABASE_URL for this target ('' when it has none)."""
        options = {
            "unix_socket": self.unix_socket,
            "ssl-mode": self.ssl_mode if self.ssl_mode != "PREFERRED" else None,
            "ssl-ca": self.ssl_ca,
            "ssl-cert": self.ssl_cert,
            "ssl-key": self.ssl_key,
        }
        given = [f"{name}={quote(value)}" for name, value in options.items() if value]
        return f"?{'&'.join(given)}" if given else ""

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context ssl-mode asks for; None for DISABLED and PREFERRED,
        which the driver handles itself (PREFERRED: TLS when the server offers
        it, unchecked; that is pymysql's and MySQL's default)."""
        if self.ssl_mode in ("DISABLED", "PREFERRED"):
            return None
        verify = self.ssl_mode in ("VERIFY_CA", "VERIFY_IDENTITY")
        return tls_context(
            "DATABASE_URL", verify, self.ssl_mode == "VERIFY_IDENTITY", self.ssl_ca, self.ssl_cert, self.ssl_key
        )


def url_options(query: str, known: tuple[str, ...], what: str, spellings: bool = False) -> dict[str, str]:
    """A URL's query options, each given once and known; `spellings`: ssl-ca is ssl_ca."""
    options: dict[str, str] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        key = name.replace("-", "_") if spellings else name
        if key not in known:
            shown = ", ".join(k.replace("_", "-") if spellings and k.startswith("ssl") else k for k in known)
            raise ConfigError(f"{what} has an unknown option {name!r} (known: {shown})")
        if key in options or len(values) > 1:
            raise ConfigError(f"{what} gives the option {name!r} twice")
        options[key] = values[0]
    return options


def parse_database_url(url: str) -> MySQLTarget:
    """Parse mysql://user:pass@host:port/db (socket: ?unix_socket=/path; TLS:
    ?ssl-mode=VERIFY_CA&ssl-ca=/path, see docs/tls.md). A CA given without a
    mode is checked against (VERIFY_CA), a client certificate alone makes
    TLS required. Certificate files are read here, so a missing one fails at
    start-up."""
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
    if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb"):
        raise ConfigError("DATABASE_URL must look like mysql://user:password@host:3306/database")
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigError("DATABASE_URL names no database (mysql://user:password@host:3306/DATABASE)")
    options = url_options(parts.query, DATABASE_URL_OPTIONS, "DATABASE_URL", spellings=True)
    socket = options.get("unix_socket") or None
    if not parts.hostname and not socket:
        raise ConfigError("DATABASE_URL names no host")
    mode = options.get("ssl_mode", "").upper().replace("-", "_") or (
        "VERIFY_CA" if options.get("ssl_ca") else "REQUIRED" if options.get("ssl_cert") else "PREFERRED"
    )
    target = MySQLTarget(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=identifier(unquote(database), "database name"),
        unix_socket=socket,
        ssl_mode=mode,
        ssl_ca=options.get("ssl_ca") or None,
        ssl_cert=options.get("ssl_cert") or None,
        ssl_key=options.get("ssl_key") or None,
    )
    target.tls_context()
    return target


def check_redis_url(url: str) -> str:
    """REDIS_URL, checked: its scheme, its query options (redis-py's names;
    TLS ones only with rediss://), and its certificate files, read here so
    that a missing CA fails at start-up instead of looking like an outage."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced [ or ], a port that is not one
        raise ConfigError(f"REDIS_URL is not a URL: {exc}") from None
    if is_sentinel_url(url):
        if parse_sentinel_url(url).tls is not None:  # the same ssl_ options and files as rediss://
            ssl_options = "&".join(item for item in parts.query.split("&") if item.startswith("ssl_"))
            redis_tls_context(f"rediss://sentinel/?{ssl_options}")
        return url
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(
            "REDIS_URL must look like redis://host:6379/0 (rediss:// for TLS, redis+sentinel:// for Sentinel)"
        )
    options = url_options(parts.query, REDIS_URL_OPTIONS, "REDIS_URL")
    tls = [name for name in TLS_OPTIONS if name in options]
    if tls and parts.scheme != "rediss":
        raise ConfigError(f"REDIS_URL gives {tls[0]} but is not a rediss:// URL (TLS)")
    redis_tls_context(url)
    return url


def redis_tls_context(url: str) -> ssl.SSLContext | None:
    """The TLS context a rediss:// URL's options describe (None for other URLs),
    as redis-py builds it, which unquotes each value once more after parse_qs."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    options = {name: unquote(value) for name, value in url_options(parts.query, REDIS_URL_OPTIONS, "REDIS_URL").items()}
    reqs = options.get("ssl_cert_reqs", "required")
    if reqs not in REDIS_CERT_REQS:
        raise ConfigError(f"REDIS_URL ssl_cert_reqs must be one of {', '.join(REDIS_CERT_REQS)}, got {reqs!r}")
    if options.get("ssl_keyfile") and not options.get("ssl_certfile"):
        raise ConfigError("REDIS_URL gives ssl_keyfile without ssl_certfile")
    return tls_context(
        "REDIS_URL",
        reqs != "none",
        False,
        options.get("ssl_ca_certs") or None,
        options.get("ssl_certfile") or None,
        options.get("ssl_keyfile") or None,
    )


def redis_where(url: str) -> str:
    """Where a REDIS_URL points, without its user, password or options, for messages."""
    if is_sentinel_url(url):
        return parse_sentinel_url(url).describe()
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"


def check_http_url(url: str | None, what: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url or ""


@dataclass(frozen=True)
class Partition:
    """Rows whose id % of == index belong to this partition (odd = 1 of 2, even = 0 of 2)."""

    index: int
    of: int

    def __post_init__(self):
        if self.of < 1 or not 0 <= self.index < self.of:
            raise ConfigError(f"partition must satisfy 0 <= K < N, got K={self.index} N={self.of}")

    def __str__(self) -> str:
        return f"{self.index}/{self.of}"


@dataclass(frozen=True)
class Settings:
    database: MySQLTarget
    redis_url: str = field(repr=False)
    partition: Partition
    table: str = "campaign_master_1"
    phone_column: str = "column1"
    status_column: str = "column3"
    key_prefix: str = ""
    poll_interval: float = 5.0
    batch_size: int = 500
    once: bool = False
    exclusive: bool = False  # take the run lock, as --once always does
    metrics_port: int | None = None  # serve Prometheus metrics here
    metrics_host: str = "127.0.0.1"
    show_phones: bool = False  # in logs; masked by default
    # Producer
    max_queued: int = 50_000
    full_scan_interval: float = 60.0
    # Consumer
    whatsapp_url: str = "http://localhost:8080/test_camp"
    whatsapp_token: str | None = field(default=None, repr=False)
    template: str = "hello_world"
    language: str = "en_US"
    concurrency: int = 16
    max_attempts: int = 5
    lease_seconds: float = 60.0
    request_timeout: float = 3.0
    retry_delay: float = 5.0
    http_engine: str = "requests"
    provider: str = "webhook"
    default_region: str | None = None  # for national phone numbers, e.g. ID
    text: str | None = None  # a text message instead of the template; {column} takes the row's value
    params: tuple[str, ...] = ()  # columns whose values fill the template's body parameters, in order
    template_column: str | None = None  # a row's own template name, when it has one
    text_column: str | None = None  # a row's own text (sent as it is), when it has one
    meta_base_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v21.0"
    meta_phone_number_id: str | None = None
    waha_session: str = "default"
    waha_api_key: str | None = field(default=None, repr=False)
    gowa_username: str | None = None
    gowa_password: str | None = field(default=None, repr=False)
    # Several senders, failover and pacing
    rate: str | None = None  # per sender, shared by all consumers: 80/s, 20/min
    jitter: float = 0.0  # seconds: each gap between sends to one sender grows by a random 0..jitter
    window: str | None = None  # 09:00-18:00: no claims outside it
    timezone: str | None = None  # of the window; the host's when unset
    breaker_failures: int = 10
    breaker_cooldown: float = 30.0
    breaker_successes: int = 3
    sticky_sender: bool = False  # every message to one phone through the same sender
    sticky_fallback: bool = False  # when its sender is down, another one, remembered for the phone
    daily_limit: str | None = None  # unique recipients per sender in a rolling 24 hours (a list: per sender)
    # Campaign timing (producer)
    schedule_column: str | None = None  # a row's send time (DATETIME), wall-clock in `timezone`
    start_at: str | None = None  # no row of the campaign goes out before this moment
    valid_for: str | None = None  # '3h': a row unsent this long after its time fails "expired"
    valid_for_column: str | None = None  # a row's own validity ('90m'), when it has one

    def __post_init__(self):
        identifier(self.table, "table name")
        identifier(self.phone_column, "phone column")
        identifier(self.status_column, "status column")
        for url in listed(self.whatsapp_url):
            check_http_url(url, "WHATSAPP_URL")
        self.sender_count()
        for rate in listed(self.rate):
            if rate:
                parse_rate(rate)
        self.sender_daily_limits(1)
        self.send_window()
        positive = {
            "poll interval": self.poll_interval,
            "batch size": self.batch_size,
            "max queued": self.max_queued,
            "full scan interval": self.full_scan_interval,
            "concurrency": self.concurrency,
            "max attempts": self.max_attempts,
            "lease seconds": self.lease_seconds,
            "request timeout": self.request_timeout,
            "breaker failures": self.breaker_failures,
            "breaker cool-down": self.breaker_cooldown,
            "breaker successes": self.breaker_successes,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.http_engine not in ENGINE_NAMES:
            raise ConfigError(f"HTTP_ENGINE must be one of {', '.join(ENGINE_NAMES)}, got {self.http_engine!r}")
        try:
            object.__setattr__(self, "default_region", check_region(self.default_region))
        except ValueError as exc:
            raise ConfigError(f"DEFAULT_REGION: {exc}") from None
        for name in self.params:
            identifier(name, "message variable column (--param)")
        self.start_at_epoch()
        self.valid_for_seconds()
        for column, what in (
            (self.template_column, "TEMPLATE_COLUMN"),
            (self.text_column, "TEXT_COLUMN"),
            (self.schedule_column, "SCHEDULE_COLUMN"),
            (self.valid_for_column, "VALID_FOR_COLUMN"),
        ):
            if column is not None:
                identifier(column, what)
        placeholders(self.text)  # fails with one line on a placeholder that is not a column name
        if self.provider not in PROVIDER_NAMES:
            raise ConfigError(f"WHATSAPP_PROVIDER must be one of {', '.join(PROVIDER_NAMES)}, got {self.provider!r}")
        if self.retry_delay < 0 or self.jitter < 0:
            raise ConfigError(f"retry delay and jitter must not be negative, got {self.retry_delay}, {self.jitter}")
        # Leases are renewed every third of a lease while a job is held, so
        # they only need to outlast a few renewal round trips.
        if self.lease_seconds < 1:
            raise ConfigError(f"LEASE_SECONDS must be at least 1, got {self.lease_seconds:g}")

    @property
    def message_columns(self) -> tuple[str, ...]:
        """Columns the producer reads with each row and carries in its job."""
        own = [
            name
            for name in (self.template_column, self.text_column, self.schedule_column, self.valid_for_column)
            if name
        ]
        return tuple(dict.fromkeys([*self.params, *placeholders(self.text), *own]))

    def sender_count(self) -> int:
        """How many senders the per-sender lists describe; each list has one value or one per sender."""
        lengths = {name: len(listed(getattr(self, name))) for name in PER_SENDER}
        count = max(lengths.values())
        for name, length in lengths.items():
            if length not in (1, count):
                raise ConfigError(
                    f"{PER_SENDER[name]} lists {length} values for {count} senders: "
                    "give one value for all of them or one per sender"
                )
        return count

    def per_sender(self) -> list["Settings"]:
        """One Settings per sender, each with that sender's URL, credentials and rate."""
        count = self.sender_count()
        if count == 1:
            return [self]
        lists: dict[str, Any] = {name: listed(getattr(self, name)) for name in PER_SENDER}
        return [
            replace(self, **{name: values[i if len(values) > 1 else 0] for name, values in lists.items()})
            for i in range(count)
        ]

    def sender_rates(self, count: int) -> list[float | None]:
        """Sends a second allowed per sender (None: no limit), for `count` senders."""
        rates = [parse_rate(rate) if rate else None for rate in listed(self.rate)]
        return rates * count if len(rates) == 1 else rates

    def sender_daily_limits(self, count: int) -> list[int | None]:
        """Unique recipients allowed per sender in a rolling 24 hours (None: no limit), for `count` senders."""
        limits: list[int | None] = []
        for value in listed(self.daily_limit):
            text = (value or "").strip()
            if not text:
                limits.append(None)
            elif not (text.isascii() and text.isdecimal()) or int(text) <= 0:
                raise ConfigError(f"DAILY_LIMIT {value!r} is not a positive whole number of recipients")
            else:
                limits.append(int(text))
        return limits * count if len(limits) == 1 else limits

    def start_at_epoch(self) -> float | None:
        """START_AT as unix seconds (wall-clock in SEND_TIMEZONE)."""
        if not self.start_at:
            return None
        try:
            return moment(self.start_at, zone_of(self.timezone))
        except ValueError:
            raise ConfigError(f"START_AT {self.start_at!r} is not a time like 2026-12-07 09:00") from None

    def valid_for_seconds(self) -> float | None:
        return parse_duration(self.valid_for) if self.valid_for else None

    def send_window(self) -> SendWindow | None:
        return SendWindow.parse(self.window, self.timezone) if self.window else None
