"""Settings: one frozen object, built once at start-up from flags and environment.

Nothing else in the project reads the environment; every part gets what it
needs from here. Validation happens once, so a bad value fails at start-up
with one line instead of deep inside a loop.
"""

import re
import string
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from common.errors import ConfigError
from common import providers
from common.http_engines import ENGINES
from common.phones import check_region

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


@dataclass(frozen=True)
class MySQLTarget:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    unix_socket: str | None = None

    def describe(self) -> str:
        """Where we connect, without the password, for log lines and errors."""
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}/{self.database}"


def parse_database_url(url: str) -> MySQLTarget:
    """Parse mysql://user:pass@host:port/db (socket: ?unix_socket=/path)."""
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
    socket = parse_qs(parts.query).get("unix_socket", [None])[0]
    if not parts.hostname and not socket:
        raise ConfigError("DATABASE_URL names no host")
    return MySQLTarget(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=identifier(unquote(database), "database name"),
        unix_socket=socket,
    )


def check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError("REDIS_URL must look like redis://host:6379/0")
    return url


def check_http_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


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
    meta_base_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v21.0"
    meta_phone_number_id: str | None = None
    waha_session: str = "default"
    waha_api_key: str | None = field(default=None, repr=False)
    gowa_username: str | None = None
    gowa_password: str | None = field(default=None, repr=False)

    def __post_init__(self):
        identifier(self.table, "table name")
        identifier(self.phone_column, "phone column")
        identifier(self.status_column, "status column")
        check_http_url(self.whatsapp_url, "WHATSAPP_URL")
        positive = {
            "poll interval": self.poll_interval,
            "batch size": self.batch_size,
            "max queued": self.max_queued,
            "full scan interval": self.full_scan_interval,
            "concurrency": self.concurrency,
            "max attempts": self.max_attempts,
            "lease seconds": self.lease_seconds,
            "request timeout": self.request_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.http_engine not in ENGINES:
            raise ConfigError(f"HTTP_ENGINE must be one of {', '.join(ENGINES)}, got {self.http_engine!r}")
        try:
            object.__setattr__(self, "default_region", check_region(self.default_region))
        except ValueError as exc:
            raise ConfigError(f"DEFAULT_REGION: {exc}") from None
        for name in self.params:
            identifier(name, "message variable column (--param)")
        placeholders(self.text)  # fails with one line on a placeholder that is not a column name
        if self.provider not in providers.names():
            raise ConfigError(f"WHATSAPP_PROVIDER must be one of {', '.join(providers.names())}, got {self.provider!r}")
        if self.retry_delay < 0:
            raise ConfigError(f"retry delay must not be negative, got {self.retry_delay}")
        # Leases are renewed every third of a lease while a job is held, so
        # they only need to outlast a few renewal round trips.
        if self.lease_seconds < 1:
            raise ConfigError(f"LEASE_SECONDS must be at least 1, got {self.lease_seconds:g}")

    @property
    def message_columns(self) -> tuple[str, ...]:
        """Columns the producer reads with each row and carries in its job."""
        return tuple(dict.fromkeys([*self.params, *placeholders(self.text)]))
