"""Fixtures: fakeredis for unit tests; for integration tests a throwaway MySQL
database per session, an empty Redis database per test, and the mock endpoint.

The services come from DATABASE_URL and REDIS_URL (scripts/test exports
them from .env); the tests never touch the databases those URLs name.
"""

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import pytest
import redis

from common.cli import environment_variables
from common.process.consumer import Consumer
from common.process.producer import Producer
from common.process.wiring import campaign_table, senders_for
from common.queue.jobs import JobQueue
from common.settings import MySQLTarget, Partition, Settings, parse_database_url
from common.store import schema
from common.store.campaign import CampaignTable
from common.testing.mock_gateway import MockWhatsApp
from common.testing.services import connect_mysql, database_url, load_schema

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "mysql://root@127.0.0.1:3306/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def admin_connection(target: MySQLTarget, database: str | None = None):
    return connect_mysql(target, database)


@pytest.fixture
def fake_redis():
    client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.flushall()


@pytest.fixture(scope="session")
def mysql_server() -> MySQLTarget:
    """A throwaway database (campaign_test_<hex>) with the schema, dropped at the end."""
    base = parse_database_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    name = f"campaign_test_{secrets.token_hex(4)}"
    with admin_connection(base) as connection:
        connection.cursor().execute(f"CREATE DATABASE {name}")
    target = MySQLTarget(base.host, base.port, base.user, base.password, name, base.unix_socket)
    yield target
    with admin_connection(base) as connection:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def mysql_db(mysql_server):
    """The session database with fresh, empty tables for this test."""
    with admin_connection(mysql_server, mysql_server.database) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {', '.join(schema.table_names())}")
        load_schema(connection.cursor())
    return mysql_server


@pytest.fixture(scope="session")
def redis_url() -> str:
    """An empty Redis database number (rq's habit), so tests never see other data."""
    base = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL).rsplit("/", 1)[0]
    for number in range(15, 0, -1):
        url = f"{base}/{number}"
        if redis.Redis.from_url(url).dbsize() == 0:
            return url
    pytest.fail("no empty Redis database to test in")


@pytest.fixture
def real_redis(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def mock():
    with MockWhatsApp() as server:
        yield server


class Campaign:
    """The campaign table as the tests see it: insert rows, read their states."""

    def __init__(self, target: MySQLTarget):
        self.target = target
        self.connection = admin_connection(target, target.database)

    def query(self, sql: str, args=None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def add(self, count: int, phone=lambda i: f"62812{i:08d}") -> list[int]:
        """Insert `count` pending rows; returns their ids."""
        with self.connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO campaign_master_1 (column1) VALUES (%s)", [(phone(i),) for i in range(count)]
            )
        return [row[0] for row in self.query("SELECT id FROM campaign_master_1 ORDER BY id")][-count:]

    def states(self) -> dict[int, int]:
        return dict(self.query("SELECT id, column3 FROM campaign_master_1"))

    def count(self, status: int) -> int:
        return self.query("SELECT COUNT(*) FROM campaign_master_1 WHERE column3 = %s", (status,))[0][0]

    def failure_reasons(self) -> dict[int, str]:
        return dict(self.query("SELECT row_id, reason FROM campaign_failures"))


@pytest.fixture
def campaign(mysql_db):
    table = Campaign(mysql_db)
    yield table
    table.connection.close()


@pytest.fixture
def settings_for(mysql_db, redis_url, mock):
    """Settings for an in-process role; fast retries so tests stay short."""

    def build(index=1, of=2, **overrides):
        values = dict(
            database=mysql_db,
            redis_url=redis_url,
            partition=Partition(index, of),
            whatsapp_url=f"{mock.url}/test_camp",
            poll_interval=0.2,
            retry_delay=0.05,
            request_timeout=1.0,
            lease_seconds=5.0,
            concurrency=4,
            batch_size=50,
            breaker_cooldown=0.5,
        )
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def table_for(mysql_db):
    tables = []

    def build(settings: Settings) -> CampaignTable:
        tables.append(campaign_table(settings))
        return tables[-1]

    yield build
    for table in tables:
        table.close()


@pytest.fixture
def queue_for(real_redis):
    def build(settings: Settings) -> JobQueue:
        return JobQueue(real_redis, settings.partition, settings.key_prefix)

    return build


@pytest.fixture
def role_env(mysql_db, redis_url, mock):
    """Environment for running the real entry points as subprocesses."""
    own = {name: value for name, value in os.environ.items() if name not in environment_variables()}
    env = dict(
        own,
        DATABASE_URL=database_url(mysql_db),
        REDIS_URL=redis_url,
        WHATSAPP_URL=f"{mock.url}/test_camp",
        POLL_INTERVAL="0.2",
        RETRY_DELAY="0.05",
        WHATSAPP_TIMEOUT="1",
        LEASE_SECONDS="4",
        CONCURRENCY="4",
        BREAKER_COOLDOWN="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_role(module: str, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_role(module: str, env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def build(settings_for, table_for, queue_for):
    """Build producers and consumers wired to the real services."""
    made = []

    def producer(**overrides):
        settings = settings_for(**overrides)
        return Producer(settings, table_for(settings), queue_for(settings))

    def consumer(**overrides):
        settings = settings_for(**overrides)
        made.append(Consumer(settings, table_for(settings), queue_for(settings), senders_for(settings)))
        return made[-1]

    yield producer, consumer
    for role in made:
        role.shutdown()


def drain(consumer, cycles=2000):
    """Cycle the consumer until nothing is due or in flight."""
    for _ in range(cycles):
        if not consumer.loop():
            consumer.record()
            return
    raise AssertionError("consumer never went idle")


def drain_queue(consumer, timeout=15.0):
    """Cycle the consumer until its queue is empty, retries included."""
    deadline = time.monotonic() + timeout
    while consumer.queue.depth() and time.monotonic() < deadline:
        drain(consumer)
        time.sleep(0.02)
    assert consumer.queue.depth() == 0, "queue did not empty"
