"""Start-up of the real entry points: long-running roles wait for MySQL and
Redis instead of exiting (honcho would stop the whole stack), `--once` and
bad configuration still exit at once, and a partition count that differs
from the live processes' is refused."""

import dataclasses
import signal
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from common.errors import EXIT_CONFIG, EXIT_UNAVAILABLE
from common.store.campaign import SENT
from tests.conftest import database_url, run_role, start_role
from tests.integration.test_processes import one_line_failure, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

WAITING = "retrying with backoff"


class Watched:
    """A role process whose log lines are read as they come."""

    def __init__(self, module: str, env: dict, *args: str):
        self.process = start_role(module, env, *args)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def saying(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.reader.join(timeout=5)
        return code


@pytest.fixture
def cut_proxy():
    """A forwarder to a service, cut until the test restores it."""
    proxies = []

    def build(host: str, port: int) -> TcpProxy:
        proxies.append(TcpProxy(host, port))
        proxies[-1].cut()
        return proxies[-1]

    yield build
    for proxy in proxies:
        proxy.cut()


def queue_odd_rows(campaign, role_env, count=10) -> int:
    odd = [i for i in campaign.add(count) if i % 2 == 1]
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    return len(odd)


def waits_then_sends(consumer: Watched, proxy: TcpProxy, campaign, sent: int) -> None:
    try:
        wait_for(lambda: consumer.saying(WAITING), timeout=15, what="the waiting line")
        assert consumer.process.poll() is None, consumer.lines
        proxy.restore()
        wait_for(lambda: campaign.count(SENT) == sent, timeout=15, what="the rows sent once the service is back")
    finally:
        code = consumer.stop()
    assert code == 0, consumer.lines
    assert len(consumer.saying(WAITING)) == 1 and len(consumer.saying("services are back")) == 1, consumer.lines
    assert not consumer.saying("Traceback")


def test_a_consumer_started_before_mysql_waits_for_it_then_sends(campaign, role_env, mysql_db, cut_proxy):
    sent = queue_odd_rows(campaign, role_env)
    proxy = cut_proxy(mysql_db.host, mysql_db.port)
    proxied = dataclasses.replace(mysql_db, host="127.0.0.1", port=proxy.port)
    consumer = Watched("consumers.odd", {**role_env, "DATABASE_URL": database_url(proxied)})
    waits_then_sends(consumer, proxy, campaign, sent)
    assert "MySQL at" in consumer.saying(WAITING)[0]


def test_a_consumer_started_before_redis_waits_for_it_then_sends(campaign, role_env, redis_url, cut_proxy):
    sent = queue_odd_rows(campaign, role_env)
    url = urlsplit(redis_url)
    proxy = cut_proxy(url.hostname, url.port)
    consumer = Watched("consumers.odd", {**role_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}{url.path}"})
    waits_then_sends(consumer, proxy, campaign, sent)
    assert "Redis is unreachable" in consumer.saying(WAITING)[0]


@pytest.mark.parametrize(
    "variable,value,text",
    [
        ("DATABASE_URL", "mysql://u:secret@127.0.0.1:1/db", "MySQL at"),
        ("REDIS_URL", "redis://127.0.0.1:1/0", "Redis is unreachable"),
    ],
)
def test_a_once_consumer_still_exits_3_when_a_service_is_unreachable(campaign, role_env, variable, value, text):
    result = run_role("consumers.odd", {**role_env, variable: value}, "--once", timeout=20)
    one_line_failure(result, EXIT_UNAVAILABLE, text)


def test_wrong_mysql_credentials_still_exit_2_at_once_without_once(campaign, role_env, mysql_db):
    wrong = dataclasses.replace(mysql_db, password="wrong-password")
    result = run_role("consumers.odd", {**role_env, "DATABASE_URL": database_url(wrong)}, timeout=20)
    one_line_failure(result, EXIT_CONFIG, "refused the login")


def test_a_partition_count_unlike_the_live_processes_is_refused(campaign, role_env, real_redis):
    live = Watched("consumers.odd", role_env)
    try:
        wait_for(lambda: real_redis.zcard("processes"), timeout=15, what="the live consumer's heartbeat")
        refused = run_role("consumers", role_env, "--partition", "0", "--of", "3", timeout=20)
    finally:
        assert live.stop() == 0, live.lines
    one_line_failure(refused, EXIT_CONFIG, "live consumers of this campaign use N=2 partitions and this consumer N=3")
    assert "stop them all" in refused.stderr
    started = run_role("consumers", role_env, "--partition", "0", "--of", "3", "--once", timeout=20)
    assert started.returncode == 0, started.stderr
