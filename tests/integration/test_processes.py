"""The real entry points as processes: the whole run, kills, signals, bad input."""

import json
import signal
import time

import pytest

from common.errors import EXIT_CONFIG, EXIT_LOCKED, EXIT_UNAVAILABLE
from common.store.campaign import PENDING, SENT
from common.testing.mock_gateway import MockWhatsApp
from tests.conftest import run_role, start_role

pytestmark = pytest.mark.integration

ROLES = ["producers.odd", "producers.even", "consumers.odd", "consumers.even"]


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process, sig=signal.SIGTERM, timeout=10):
    process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, err


def test_the_four_processes_send_every_row_once(campaign, role_env, mock, real_redis):
    ids = campaign.add(600)
    processes = [start_role(module, role_env) for module in ROLES]
    try:
        wait_for(lambda: campaign.count(PENDING) == 0, what="every row sent")
        wait_for(lambda: not real_redis.keys("job:*"), timeout=5, what="job keys cleared")
    finally:
        results = [stop(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0], [err[-500:] for _, err in results]
    assert campaign.count(SENT) == 600
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}


def test_a_consumer_killed_mid_batch_loses_nothing(campaign, role_env, mock):
    ids = [i for i in campaign.add(200) if i % 2 == 1]
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    mock.configure(latency_ms=200)
    victim = start_role("consumers.odd", role_env)
    wait_for(lambda: mock.stats()["delivered"] >= 10, what="sends under way")
    victim.kill()
    victim.communicate()
    wait_for(lambda: mock.stats()["in_flight"] == 0, what="the killed consumer's requests answered")
    at_kill = mock.stats()["delivered"]
    assert at_kill < len(ids)
    unrecorded = at_kill - campaign.count(SENT)  # delivered, but the victim died before recording them
    mock.configure(latency_ms=0)
    survivor = start_role("consumers.odd", role_env)
    try:
        wait_for(lambda: campaign.count(PENDING) == 100, what="odd rows sent after the lease")
    finally:
        code, err = stop(survivor)
    assert code == 0, err
    deliveries = mock.deliveries()
    assert set(deliveries) == {f"campaign_master_1:{i}" for i in ids}
    # Repeats are possible only for sends delivered and not yet recorded at
    # the kill: at most the requests in flight plus the outcomes not yet written.
    assert sum(deliveries.values()) - len(ids) <= unrecorded


def test_sigterm_finishes_sends_in_flight_then_exits_0(campaign, role_env, mock, real_redis):
    ids = [i for i in campaign.add(200) if i % 2 == 1]
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    mock.configure(latency_ms=300)
    consumer = start_role("consumers.odd", role_env)
    wait_for(lambda: mock.stats()["in_flight"] >= 4, what="sends in flight")
    started = time.monotonic()
    code, err = stop(consumer)
    assert code == 0, err
    assert time.monotonic() - started < 5  # inside honcho's grace period
    delivered = set(mock.deliveries())
    states = campaign.states()
    for row in ids:
        # Whatever reached the endpoint is recorded; the rest waits, due at once.
        assert states[row] == (SENT if f"campaign_master_1:{row}" in delivered else PENDING)
    now_ms = time.time() * 1000
    assert all(score <= now_ms for _, score in real_redis.zrange("due:2:1", 0, -1, withscores=True))
    mock.configure(latency_ms=0)
    result = run_role("consumers.odd", role_env, "--once")
    assert result.returncode == 0
    assert campaign.count(PENDING) == 100, result.stderr
    assert mock.stats()["duplicates"] == 0


def test_once_runs_a_cycle_and_exits_0(campaign, role_env, mock):
    campaign.add(20)
    for module in ROLES:
        result = run_role(module, role_env, "--once")
        assert result.returncode == 0, result.stderr
    assert campaign.count(SENT) == 20 and mock.stats()["delivered"] == 20


def test_generic_partition_flags(campaign, role_env, mock):
    campaign.add(9)
    for k in range(3):
        assert run_role("producers", role_env, "--partition", str(k), "--of", "3", "--once").returncode == 0
        assert run_role("consumers", role_env, "--partition", str(k), "--of", "3", "--once").returncode == 0
    assert campaign.count(SENT) == 9 and mock.stats()["delivered"] == 9


@pytest.mark.parametrize("module", ROLES + ["producers", "consumers"])
def test_help_explains_options_and_variables(module):
    result = run_role(module, {}, "--help")
    assert result.returncode == 0
    assert "DATABASE_URL" in result.stdout and "--once" in result.stdout


def one_line_failure(result, code, text):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and text in lines[0], lines


@pytest.mark.parametrize(
    "variable,value,text",
    [
        ("CAMPAIGN_TABLE", "campaign; DROP TABLE x", "not a plain identifier"),
        ("PHONE_COLUMN", "column1,column3", "not a plain identifier"),
        ("DATABASE_URL", "mysql//nonsense", "DATABASE_URL must look like"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must look like"),
        ("WHATSAPP_URL", "ftp://x/y", "WHATSAPP_URL"),
        ("CAMPAIGN_TABLE", "no_such_table", "load schema.sql"),
        ("LEASE_SECONDS", "0.5", "LEASE_SECONDS"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(campaign, role_env, variable, value, text):
    result = run_role("consumers.odd", {**role_env, variable: value}, "--once")
    one_line_failure(result, EXIT_CONFIG, text)


def test_wrong_mysql_credentials_are_one_line_and_exit_2(campaign, role_env, mysql_db):
    url = f"mysql://{mysql_db.user}:wrong-password@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    result = run_role("producers.odd", {**role_env, "DATABASE_URL": url}, "--once")
    one_line_failure(result, EXIT_CONFIG, "refused the login")
    assert "wrong-password" not in result.stderr


@pytest.mark.parametrize(
    "module,variable,value,text",
    [
        ("producers.odd", "DATABASE_URL", "mysql://u:secret@127.0.0.1:1/db", "MySQL at"),
        ("producers.odd", "REDIS_URL", "redis://127.0.0.1:1/0", "Redis is unreachable"),
        ("consumers.odd", "WHATSAPP_URL", "http://127.0.0.1:1/test_camp", "unreachable"),
    ],
)
def test_an_unreachable_service_at_start_up_is_one_line_and_exit_3(campaign, role_env, module, variable, value, text):
    result = run_role(module, {**role_env, variable: value}, "--once")
    one_line_failure(result, EXIT_UNAVAILABLE, text)
    assert "secret" not in result.stderr


def test_an_endpoint_refusing_the_token_is_one_line_and_exit_2(campaign, role_env):
    with MockWhatsApp(token="right-token") as guarded:
        env = {**role_env, "WHATSAPP_URL": f"{guarded.url}/test_camp", "WHATSAPP_TOKEN": "wrong-token"}
        result = run_role("consumers.odd", env, "--once")
    one_line_failure(result, EXIT_CONFIG, "refused our credentials")
    assert "wrong-token" not in result.stderr


def test_the_token_is_sent_and_never_logged(campaign, role_env):
    campaign.add(4)
    with MockWhatsApp(token="right-token") as guarded:
        env = {
            **role_env,
            "WHATSAPP_URL": f"{guarded.url}/test_camp",
            "WHATSAPP_TOKEN": "right-token",
            "LOG_LEVEL": "DEBUG",
        }
        assert run_role("producers.odd", env, "--once").returncode == 0
        result = run_role("consumers.odd", env, "--once")
        assert guarded.stats()["delivered"] == 2
    assert result.returncode == 0
    assert "right-token" not in result.stderr


def test_phone_numbers_are_masked_in_logs(campaign, role_env):
    campaign.add(2, phone=lambda i: "628123" if i == 1 else "x628123456789")
    assert run_role("producers.even", role_env, "--once").returncode == 0
    result = run_role("consumers.even", role_env, "--once")
    assert result.returncode == 0
    assert "failed after 1 attempts" in result.stderr
    assert "628123456789" not in result.stderr


def test_json_logs_carry_role_partition_and_row_and_phones_show_only_when_asked(campaign, role_env):
    ids = campaign.add(2, phone=lambda i: "x628123456789")
    row_id = next(i for i in ids if i % 2 == 0)
    assert run_role("producers.even", role_env, "--once").returncode == 0
    result = run_role("consumers.even", dict(role_env, LOG_FORMAT="json"), "--once")
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    failure = next(line for line in lines if "failed after" in line["event"])
    assert failure["role"] == "consumer" and failure["partition"] == "0/2" and failure["row_id"] == row_id
    assert failure["level"] == "warning" and "x6*********89" in failure["event"]
    assert "628123456789" not in result.stderr

    campaign.query("UPDATE campaign_master_1 SET column3 = 1")
    assert run_role("producers.even", role_env, "--once").returncode == 0
    shown = run_role("consumers.even", role_env, "--once", "--show-phones")
    assert "x628123456789" in shown.stderr


def test_a_second_once_run_of_the_same_role_and_partition_exits_4_while_the_first_runs(
    campaign, role_env, mock, real_redis
):
    campaign.add(40)
    assert run_role("producers.odd", role_env, "--once").returncode == 0
    mock.configure(latency_ms=300)
    first = start_role("consumers.odd", dict(role_env, CONCURRENCY="1"), "--once")
    try:
        wait_for(lambda: mock.stats()["requests"] > 0, what="the first run sending")
        second = run_role("consumers.odd", role_env, "--once")
        other_partition = run_role("consumers.even", role_env, "--once")
    finally:
        code, err = stop(first)
    assert second.returncode == EXIT_LOCKED and "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and "another consumer for partition 1/2" in second.stderr
    assert other_partition.returncode == 0  # another partition is another lock
    assert code == 0 and not real_redis.exists("lock:consumer:2:1")  # released at exit
    assert run_role("consumers.odd", role_env, "--once").returncode == 0


def test_exclusive_keeps_a_second_long_running_copy_out(campaign, role_env, real_redis):
    first = start_role("producers.even", role_env, "--exclusive")
    try:
        wait_for(lambda: real_redis.exists("lock:producer:2:0"), what="the first copy holding the lock")
        second = run_role("producers.even", role_env, "--exclusive")
    finally:
        code, _ = stop(first)
    assert second.returncode == EXIT_LOCKED and "another producer for partition 0/2" in second.stderr
    assert code == 0
