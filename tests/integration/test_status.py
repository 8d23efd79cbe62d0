"""Status, heartbeats and pause/resume against the real services and processes."""

import json
import subprocess
import sys
import time

import pytest

from common.queue.pause import set_paused
from common.settings import Partition
from common.store.campaign import FAILED, PENDING, SENT
from tests.conftest import ROOT, drain, drain_queue, run_role, start_role
from tests.integration.test_processes import ROLES, stop, wait_for

pytestmark = pytest.mark.integration


def run_status(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.status", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def status(env, *args):
    result = run_status(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_json(env):
    return json.loads(status(env, "--json"))


def test_status_shows_progress_processes_and_failure_reasons_that_match_the_database(
    campaign, role_env, mock, real_redis
):
    campaign.add(400)
    campaign.add(3, phone=lambda i: f"not-a-phone-{i}")
    # A shared 50/s pace makes the run last about 8 s, so the mid-run look is really mid-run.
    paced_env = dict(role_env, RATE="50/s")
    processes = [start_role(module, paced_env) for module in ROLES]
    try:
        wait_for(lambda: mock.stats()["delivered"] > 20, what="sends under way")
        during = status_json(paced_env)
        assert sorted((p["role"], p["partition"]) for p in during["processes"]) == [
            ("consumer", "0/2"),
            ("consumer", "1/2"),
            ("producer", "0/2"),
            ("producer", "1/2"),
        ]
        assert during["rows"] == 403 and not during["done"]
        wait_for(lambda: campaign.count(PENDING) == 0, what="every row sent")
        wait_for(lambda: status_json(paced_env)["done"], timeout=10, what="status done")
        after = status_json(paced_env)
    finally:
        results = [stop(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0]
    assert after["total"]["sent"] == campaign.count(SENT) == 400
    assert after["total"]["failed"] == campaign.count(FAILED) == 3
    assert after["total"]["pending"] == 0 and after["done_percent"] == 100.0
    assert sum(p["sent"] for p in after["partitions"]) == 400
    assert after["total"]["sent_last_minute"] == 400
    # Taken over the run's own age (about 8 s at 50/s), not a whole minute.
    assert 25 < after["rate_per_second"] <= 60, after["rate_per_second"]
    assert after["failure_reasons"][0]["rows"] == 3
    assert after["total"]["reclaims"] == 0  # no consumer died, so no lease lapsed
    assert status_json(role_env)["processes"] == []  # a clean exit removes the heartbeat
    table = status(role_env)
    assert "403 rows done (100.0 %)" in table and "Why rows failed" in table


def test_watch_redraws_until_done_then_exits_0(campaign, role_env, mock, real_redis):
    campaign.add(20)
    for module in ROLES:
        assert run_role(module, role_env, "--once").returncode == 0
    out = status(role_env, "--watch", "--every", "0.2")
    assert "20 of 20 rows done" in out and "done" in out


def test_a_paused_partition_claims_nothing_until_resumed(campaign, build, mock, role_env, real_redis):
    producer, consumer = build
    ids = [i for i in campaign.add(20) if i % 2 == 1]
    producer().loop()
    assert "paused partition 1/2" in status(role_env, "pause", "--partition", "1")
    assert status_json(role_env)["partitions"][1]["paused"]
    c = consumer()
    for _ in range(10):
        c.loop()
    assert mock.deliveries() == {} and all(campaign.states()[i] == PENDING for i in ids)
    status(role_env, "resume", "--partition", "1")
    drain_queue(c)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}


def test_pausing_the_whole_campaign_stops_every_partition(campaign, build, mock, real_redis):
    producer, consumer = build
    campaign.add(10)
    set_paused(real_redis, "", None, True)
    for k in (0, 1):
        producer(index=k).loop()
        c = consumer(index=k)
        for _ in range(5):
            c.loop()
    assert mock.deliveries() == {}
    set_paused(real_redis, "", None, False)
    set_paused(real_redis, "", Partition(0, 2), False)  # resuming what was never paused is harmless
    drain_queue(c)
    assert len(mock.deliveries()) == 5


def test_status_against_an_unreachable_redis_is_one_line_and_exit_3(campaign, role_env):
    result = subprocess.run(
        [sys.executable, "-m", "common.status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(role_env, REDIS_URL="redis://127.0.0.1:1/0"),
        timeout=30,
    )
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Redis" in result.stderr


def test_jobs_claimed_before_a_pause_are_not_sent_until_resumed(campaign, build, mock, real_redis, monkeypatch):
    monkeypatch.setattr("common.queue.pause.CHECK_EVERY", 0.0)
    producer, consumer = build
    ids = [i for i in campaign.add(20) if i % 2 == 1]
    producer().loop()
    mock.configure(latency_ms=300)
    c = consumer(concurrency=2)  # claims four: two sending, two waiting for a free thread
    c.loop()
    assert len(c.in_flight) == 4
    set_paused(real_redis, "", None, True)
    for _ in range(40):
        c.loop()
    assert mock.stats()["requests"] <= 2  # the two already sending; the waiting two went back
    set_paused(real_redis, "", None, False)
    drain_queue(c)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}


def test_jobs_claimed_between_heartbeats_are_not_counted_as_waiting_for_a_retry(
    campaign, build, mock, role_env, real_redis
):
    producer, consumer = build
    campaign.add(4)
    producer().loop()
    mock.configure(fail_first=1, fail_status=503)
    c = consumer(retry_delay=60, request_timeout=10)
    drain(c)  # rows 1 and 3 failed once: due again in 30 to 90 s
    campaign.add(6)
    producer().loop()
    mock.configure(fail_first=0, latency_ms=2000)
    c.loop()  # rows 5, 7 and 9 claimed, leased and sending; this consumer beats no heartbeat
    wait_for(lambda: mock.stats()["in_flight"] == 3, what="three sends under way")
    odd = status_json(role_env)["partitions"][1]
    assert (odd["waiting_retry"], odd["queued"], odd["retries"]) == (2, 0, 2)


def failed_rows_of_two_reasons(campaign, build, mock):
    """Rows 1-4 fail for their phone, rows 5-8 for an HTTP 400; rows 1-4 get
    a good phone afterwards. Returns (producer, consumer) of partition 1."""
    producer, consumer = build
    campaign.add(8, phone=lambda i: "not a phone" if i < 4 else f"62812{i:08d}")
    mock.configure(fail_first=1, fail_status=400)
    roles = []
    for k in (0, 1):
        roles.append((producer(index=k, full_scan_interval=0.01), consumer(index=k)))
        roles[-1][0].loop()
        drain(roles[-1][1])
    assert campaign.count(FAILED) == 8
    campaign.query("UPDATE campaign_master_1 SET column1 = CONCAT('6281234567', id) WHERE id <= 4")
    mock.configure(fail_first=0)
    return roles[-1]


def test_resend_sets_back_the_failed_rows_of_one_reason_and_partition_and_they_go_out_again(
    campaign, build, mock, role_env
):
    producer, consumer = failed_rows_of_two_reasons(campaign, build, mock)
    result = run_status(role_env, "resend", "--failed", "--reason", "characters other than digits", "--partition", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "set 2 failed rows back to pending (reason contains 'characters other than digits', partition 1/2); "
        "producers queue them within FULL_SCAN_INTERVAL"
    ]
    assert [campaign.states()[i] for i in range(1, 9)] == [PENDING, FAILED, PENDING] + [FAILED] * 5
    assert sorted(campaign.failure_reasons()) == [2, 4, 5, 6, 7, 8]
    time.sleep(0.02)  # past the producer's full scan interval
    producer.loop()
    drain(consumer)
    assert [campaign.states()[i] for i in (1, 3)] == [SENT, SENT]
    assert {k for k, n in mock.deliveries().items() if k.endswith(":1")} == {
        "campaign_master_1:1:1",
        "campaign_master_1:3:1",
    }


def test_resend_of_every_failed_row_counts_them_all_and_a_second_finds_none(campaign, build, mock, role_env):
    failed_rows_of_two_reasons(campaign, build, mock)
    assert status(role_env, "resend", "--failed").splitlines() == [
        "set 8 failed rows back to pending; producers queue them within FULL_SCAN_INTERVAL"
    ]
    assert campaign.count(PENDING) == 8 and campaign.failure_reasons() == {}
    assert status(role_env, "resend", "--failed").strip() == "set 0 failed rows back to pending"


def test_resend_without_failed_is_a_usage_error_that_changes_nothing(campaign, role_env):
    campaign.add(2)
    campaign.query("UPDATE campaign_master_1 SET column3 = 2")
    result = run_status(role_env, "resend", "--reason", "timeout")
    assert result.returncode == 2 and "--failed" in result.stderr and "Traceback" not in result.stderr
    assert campaign.count(FAILED) == 2


@pytest.mark.parametrize(
    "url, code, says",
    [
        (lambda t: f"mysql://{t.user}@127.0.0.1:1/{t.database}", 3, "unreachable"),
        (lambda t: f"mysql://nobody:wrong@{t.host}:{t.port}/{t.database}", 2, "refused the login"),
    ],
)
def test_resend_against_a_mysql_it_cannot_use_is_one_line_and_its_exit_code(campaign, role_env, url, code, says):
    result = run_status(dict(role_env, DATABASE_URL=url(campaign.target)), "resend", "--failed")
    assert result.returncode == code and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and says in result.stderr


def test_resend_of_a_partition_outside_of_is_a_config_error(campaign, role_env):
    result = run_status(role_env, "--of", "2", "resend", "--failed", "--partition", "2")
    assert result.returncode == 2 and "0 <= K < N" in result.stderr and "Traceback" not in result.stderr
