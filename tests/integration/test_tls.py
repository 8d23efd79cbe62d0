"""TLS on real servers started by the test, with a throwaway CA made by the
test (openssl): a redis-server that listens for TLS only and wants a client
certificate, and a MariaDB with a certificate whose campaign user must
connect over TLS with a client certificate. Rows go through both; a wrong or
missing CA, or a missing client certificate, stops a role at start-up with
one line and the configuration exit code."""

import dataclasses
import os
from urllib.parse import quote, urlsplit

import pytest

from common.cli import environment_variables
from common.errors import EXIT_CONFIG
from common.process.consumer import Consumer
from common.process.producer import Producer
from common.process.wiring import campaign_table, job_queue, senders_for
from common.settings import Partition, Settings
from common.store.campaign import SENT
from common.testing.processes import wait_until
from common.testing.services import MariaDB, RedisServer, connect_mysql, database_url, load_schema, make_certificates
from tests.conftest import drain_queue, run_role
from tests.integration.test_processes import one_line_failure

pytestmark = pytest.mark.integration

DATABASE = "campaign_tls"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory, certs):
    workdir = tmp_path_factory.mktemp("redis")
    server = RedisServer(workdir, workdir, certs)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory, certs):
    """The server, its schema, and a `campaign` user that the server itself
    refuses unless it comes over TLS with a certificate our CA signed."""
    workdir = tmp_path_factory.mktemp("mariadb")
    server = MariaDB(workdir, workdir, DATABASE, certs)
    server.install()
    server.start()
    try:
        wait_until(server.answers, 60, "mariadbd accepting TLS connections", server.log)
        with server.connect(None) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute("CREATE USER 'campaign'@'%' IDENTIFIED BY 'tls-secret' REQUIRE X509")
            cursor.execute(f"GRANT ALL ON {DATABASE}.* TO 'campaign'@'%'")
            cursor.execute(f"USE {DATABASE}")
            load_schema(cursor)
        yield server
    finally:
        server.stop()


@pytest.fixture
def campaign_target(tls_mariadb, certs):
    """The campaign user, as a DATABASE_URL with ssl-mode, CA and client certificate would give it."""
    with tls_mariadb.connect(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM campaign_master_1")
    return dataclasses.replace(
        tls_mariadb.target,
        user="campaign",
        password="tls-secret",
        ssl_cert=str(certs.client_cert),
        ssl_key=str(certs.client_key),
    )


@pytest.fixture
def tls_env(campaign_target, tls_redis, mock):
    own = {name: value for name, value in os.environ.items() if name not in environment_variables()}
    return dict(
        own,
        DATABASE_URL=database_url(campaign_target),
        REDIS_URL=tls_redis.url,
        WHATSAPP_URL=f"{mock.url}/test_camp",
        POLL_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )


def ssl_cipher(target, **changes) -> str:
    with connect_mysql(dataclasses.replace(target, **changes), DATABASE) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            return cursor.fetchone()[1]


def test_producer_and_consumer_deliver_every_row_over_tls_to_redis_and_mysql(
    campaign_target, tls_redis, tls_mariadb, mock
):
    with tls_mariadb.connect(DATABASE) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO campaign_master_1 (column1) VALUES (%s)", [(f"62812{i:08d}",) for i in range(30)]
        )
        cursor.execute("SELECT id FROM campaign_master_1")
        ids = [row[0] for row in cursor.fetchall()]
    assert campaign_target.ssl_mode == "VERIFY_IDENTITY"
    assert tls_redis.url.startswith("rediss://")
    consumers = []
    for index in (0, 1):
        settings = Settings(
            database=campaign_target,
            redis_url=tls_redis.url,
            partition=Partition(index, 2),
            whatsapp_url=f"{mock.url}/test_camp",
            poll_interval=0.2,
            retry_delay=0.05,
            request_timeout=1.0,
        )
        Producer(settings, campaign_table(settings), job_queue(settings, "producer")).loop()
        consumers.append(
            Consumer(settings, campaign_table(settings), job_queue(settings, "consumer"), senders_for(settings))
        )
        drain_queue(consumers[-1])
    for consumer in consumers:
        consumer.shutdown()
    with tls_mariadb.connect(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM campaign_master_1 WHERE column3 = %s", (SENT,))
        assert cursor.fetchone()[0] == 30
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}


def test_the_campaign_user_gets_in_only_over_tls_with_its_client_certificate(campaign_target):
    assert ssl_cipher(campaign_target).startswith("TLS_")
    with pytest.raises(Exception, match="Access denied"):
        ssl_cipher(campaign_target, ssl_mode="DISABLED", ssl_ca=None, ssl_cert=None, ssl_key=None)


@pytest.mark.parametrize("mode", ["REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"])
def test_each_mode_that_wants_tls_negotiates_it(tls_mariadb, mode):
    ca = None if mode == "REQUIRED" else tls_mariadb.target.ssl_ca
    assert ssl_cipher(tls_mariadb.target, ssl_mode=mode, ssl_ca=ca) != ""


def test_disabled_really_talks_in_the_clear(tls_mariadb):
    assert ssl_cipher(tls_mariadb.target, ssl_mode="DISABLED", ssl_ca=None) == ""


def swapped(url: str, old, new) -> str:
    return url.replace(quote(str(old)), quote(str(new)))


@pytest.mark.parametrize(
    "variable,change,text",
    [
        ("REDIS_URL", lambda url, c: swapped(url, c.ca, c.other_ca), "Redis TLS failed"),
        ("DATABASE_URL", lambda url, c: swapped(url, c.ca, c.other_ca), "TLS failed"),
        ("REDIS_URL", lambda url, c: swapped(url, c.ca, "/nowhere/ca.pem"), "cannot read the CA /nowhere/ca.pem"),
        ("DATABASE_URL", lambda url, c: swapped(url, c.ca, "/nowhere/ca.pem"), "cannot read the CA /nowhere/ca.pem"),
        ("REDIS_URL", lambda url, c: url.split("&")[0], "the server wants a client certificate"),
        ("DATABASE_URL", lambda url, c: url + "&ssl-mod=VERIFY_CA", "unknown option 'ssl-mod'"),
    ],
    ids=["redis-wrong-ca", "mysql-wrong-ca", "redis-missing-ca", "mysql-missing-ca", "redis-no-client-cert", "typo"],
)
def test_a_tls_mistake_stops_a_long_running_role_at_once_with_one_line(tls_env, certs, variable, change, text):
    env = {**tls_env, variable: change(tls_env[variable], certs)}
    result = run_role("producers.odd", env, timeout=30)  # no --once: it must not wait for a server it cannot trust
    one_line_failure(result, EXIT_CONFIG, text)
    assert "tls-secret" not in result.stderr


def test_a_wrong_ca_also_stops_status_with_one_line(tls_env, certs):
    env = {**tls_env, "REDIS_URL": swapped(tls_env["REDIS_URL"], certs.ca, certs.other_ca)}
    result = run_role("common.status", env, "--json", timeout=30)
    one_line_failure(result, EXIT_CONFIG, "not signed by the CA we trust")


def test_rediss_to_a_server_without_tls_is_refused_with_one_line(tls_env, certs, redis_url):
    plain = redis_url.replace("redis://", "rediss://", 1) + f"?ssl_ca_certs={quote(str(certs.ca))}"
    result = run_role("producers.odd", {**tls_env, "REDIS_URL": plain}, timeout=30)
    one_line_failure(result, EXIT_CONFIG, "speaks Redis without TLS")


def test_redis_url_to_a_server_that_takes_tls_only_is_refused_with_one_line(tls_env):
    plain = f"redis://{urlsplit(tls_env['REDIS_URL']).netloc}/0"
    result = run_role("producers.odd", {**tls_env, "REDIS_URL": plain}, timeout=30)
    one_line_failure(result, EXIT_CONFIG, "takes TLS only on that port (use rediss://")
