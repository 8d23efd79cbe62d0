"""Redis behind Sentinel: find the primary through the sentinels, follow a failover.

    REDIS_URL=redis+sentinel://[user:password@]host1:26379,host2:26379,host3:26379/mymaster/0

(`rediss+sentinel://` for TLS to the sentinels and the servers alike, with
the same `ssl_` options as `rediss://`; `sentinel_password=` when the
sentinels want a password of their own). A client asks the sentinels for
the primary whenever it opens a connection. A connection to a primary that
died, or that became a replica and answers READONLY, fails; the roles treat
that as "Redis is unavailable, retry", and the retry connects to whoever is
primary now. Each process logs one line per failover it follows.
"""

import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from common.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
# redis-py's TLS options, as rediss:// and rediss+sentinel:// URLs give them (settings reads them too).
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
DEFAULT_PORT = 26379
SHAPE = "redis+sentinel://[user:password@]host1:26379,host2:26379/mymaster/0"


def is_sentinel_url(url: str) -> bool:
    return url.partition(":")[0].lower() in SCHEMES


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: dict | None = None  # the ssl_ options, when the URL is rediss+sentinel://

    def describe(self) -> str:
        """Where, without secrets: for logs and error lines."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinels {hosts}, service {self.service}, db {self.db}"


def parse_sentinel_url(url: str) -> SentinelTarget:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL is not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"a Sentinel REDIS_URL looks like {SHAPE}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(sentinel_address(host) for host in hosts.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not (path[1].isascii() and path[1].isdecimal())):
        raise ConfigError(f"a Sentinel REDIS_URL names the service and optionally the db: {SHAPE}")
    username, _, password = userinfo.partition(":")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    sentinel_password = options.pop("sentinel_password", None) or None
    unknown = sorted(set(options) - set(TLS_OPTIONS))
    if unknown:
        raise ConfigError(f"REDIS_URL option {unknown[0]!r} is not one of sentinel_password, {', '.join(TLS_OPTIONS)}")
    tls = SCHEMES[parts.scheme]
    if options and not tls:
        raise ConfigError(f"REDIS_URL gives {next(iter(options))} but is not a rediss+sentinel:// URL (TLS)")
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes")  # type: ignore[assignment]
    return SentinelTarget(
        sentinels,
        path[0],
        int(path[1]) if len(path) == 2 else 0,
        unquote(username) or None,
        unquote(password) or None,
        sentinel_password,
        options if tls else None,
    )


def sentinel_address(text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        host, port = text.strip(), str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not (port.isascii() and port.isdecimal()) or not 0 < int(port) < 65536:
        raise ConfigError(f"sentinel address {text.strip()!r} is not host:port ({SHAPE})")
    return host, int(port)


class Primaries:
    """The primary each service was last reached at, in this process: a
    connection to another one means a failover happened (logged once)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.known: dict[str, tuple[str, int]] = {}

    def reached(self, service: str, address: tuple[str, int]) -> None:
        with self.lock:
            before = self.known.get(service)
            self.known[service] = address
        if before is not None and before != address:
            log.warning("Redis failed over: the primary of %s is now %s:%s (was %s:%s)", service, *address, *before)


PRIMARIES = Primaries()


class Following:
    """A sentinel-managed connection that tells PRIMARIES where it got to."""

    def connect_to(self, address):
        super().connect_to(address)  # type: ignore[misc]
        PRIMARIES.reached(self.connection_pool.service_name, (self.host, self.port))  # type: ignore[attr-defined]


class FollowingConnection(Following, SentinelManagedConnection):
    pass


class FollowingSSLConnection(Following, SentinelManagedSSLConnection):
    pass


def sentinel_client(target: SentinelTarget, **options) -> redis.Redis:
    """A client of the service's current primary; `options` are the socket
    and decoding options any of our Redis clients gets."""
    sockets = {name: value for name, value in options.items() if name.startswith("socket_")}
    tls = dict(target.tls or {})
    manager = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={
            **sockets,
            "password": target.sentinel_password,
            **({"ssl": True, **tls} if target.tls is not None else {}),
        },
    )
    return manager.master_for(
        target.service,
        connection_class=FollowingSSLConnection if target.tls is not None else FollowingConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
        **tls,
    )
