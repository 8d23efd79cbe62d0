"""The benchmark's own corner of MariaDB and Redis, removed at the end.

MySQL: a throwaway database `campaign_bench_<hex>` with schema.sql, made with
the DATABASE_URL credentials (the project user may create `campaign%`).
Redis: an empty database number where there is one, and a key prefix
`bench:<hex>:` in any case, so nothing else's keys are ever touched.
"""

import secrets

import pymysql
import redis

from common.errors import ConfigError, ServiceUnavailable
from common.settings import MySQLTarget, parse_database_url
from common.store.campaign import PENDING, SENT, translate_error
from common.testing.services import connect_mysql, database_url, load_schema

TABLE = "campaign_master_1"
PHONE_PREFIX = "62812"
UNLINK_BATCH = 10_000


def mysql_connection(target: MySQLTarget, database: str | None):
    try:
        return connect_mysql(target, database)
    except pymysql.MySQLError as exc:
        raise translate_error(exc, target) from None


class BenchDatabase:
    """The throwaway database: seed it, count its rows, read its delivery history."""

    def __init__(self, database_url: str):
        base = parse_database_url(database_url)
        name = f"campaign_bench_{secrets.token_hex(4)}"
        with mysql_connection(base, None) as admin:
            try:
                admin.cursor().execute(f"CREATE DATABASE {name}")
            except pymysql.MySQLError as exc:
                raise ConfigError(f"cannot create the database {name} as {base.user}: {exc.args[-1]}") from None
        self.base = base
        self.target = MySQLTarget(base.host, base.port, base.user, base.password, name, base.unix_socket)
        self.connection = mysql_connection(self.target, name)
        with self.connection.cursor() as cursor:
            load_schema(cursor)

    @property
    def url(self) -> str:
        """DATABASE_URL for the children, pointing at this database."""
        return database_url(self.target)

    def execute(self, sql: str, args=None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def seed(self, pending: int, processed: int = 0) -> None:
        """Empty every table, then add `processed` sent rows followed by `pending`
        pending ones (ids from 1, phones unique)."""
        for table in (TABLE, "campaign_failures", "delivery_attempts", "send_generations"):
            self.execute(f"TRUNCATE TABLE {table}")
        self.insert(processed, SENT, first=1)
        self.insert(pending, PENDING, first=processed + 1)

    def insert(self, count: int, status: int, first: int) -> None:
        # MariaDB's sequence engine makes a million rows in one statement.
        if count:
            self.execute(
                f"INSERT INTO {TABLE} (column1, column3)"
                f" SELECT CONCAT('{PHONE_PREFIX}', LPAD(seq, 8, '0')), {int(status)}"
                f" FROM seq_{int(first)}_to_{int(first + count - 1)}"
            )

    def counts(self) -> dict[int, int]:
        """Rows by status (1 pending, 0 sent, 2 failed)."""
        return dict(self.execute(f"SELECT column3, COUNT(*) FROM {TABLE} GROUP BY column3"))

    def has_pending(self) -> bool:
        return bool(self.execute(f"SELECT 1 FROM {TABLE} WHERE column3 = %s LIMIT 1", (PENDING,)))

    def pending_ids(self) -> list[int]:
        return [row[0] for row in self.execute(f"SELECT id FROM {TABLE} WHERE column3 = %s ORDER BY id", (PENDING,))]

    def attempt_latencies_ms(self) -> list[int]:
        """Send latencies the consumers wrote to delivery_attempts (empty if they write none)."""
        return [row[0] for row in self.execute("SELECT latency_ms FROM delivery_attempts WHERE latency_ms IS NOT NULL")]

    def drop(self) -> None:
        self.connection.close()
        with mysql_connection(self.base, None) as admin:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {self.target.database}")


class RedisNamespace:
    """An empty Redis database number when one is free (else REDIS_URL's own),
    and a key prefix of the benchmark's own."""

    def __init__(self, redis_url: str):
        self.url = self.empty_database(redis_url)
        self.client = redis.Redis.from_url(self.url, decode_responses=True)
        self.prefix = f"bench:{secrets.token_hex(4)}:"

    @staticmethod
    def empty_database(redis_url: str) -> str:
        # Counting up from 1: the test suite's fixture takes empty ones from 15 down.
        base = redis_url.rsplit("/", 1)[0] if redis_url.rsplit("/", 1)[-1].isdigit() else redis_url.rstrip("/")
        try:
            for number in range(1, 16):
                url = f"{base}/{number}"
                if url != redis_url and redis.Redis.from_url(url).dbsize() == 0:
                    return url
        except redis.ResponseError:
            pass  # a Redis with fewer databases: the key prefix alone keeps us apart
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis at {base} is unreachable: {exc}") from None
        return redis_url

    def keys(self, pattern: str = "*") -> int:
        return sum(1 for _ in self.client.scan_iter(self.prefix + pattern, count=UNLINK_BATCH))

    def clear(self) -> None:
        """Remove every key under the benchmark's prefix."""
        batch = []
        for key in self.client.scan_iter(self.prefix + "*", count=UNLINK_BATCH):
            batch.append(key)
            if len(batch) == UNLINK_BATCH:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)
