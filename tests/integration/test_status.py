"""Status, heartbeats and pause/resume against the real services and processes;
the after-sending funnel from receipts, and re-sending what failed after acceptance."""

import json
import subprocess
import sys
import time

import pytest
import requests

from common.delivery.receipts import Receipt
from common.queue.pause import set_paused
from common.settings import Partition
from common.store.campaign import FAILED, PENDING, SENT, CampaignTable
from common.store.receipts import ReceiptStore
from tests.conftest import ROOT, drain, drain_queue, run_role, start_role
from tests.integration.test_processes import ROLES, stop, wait_for
from tests.integration.test_webhooks import meta_status, post, serve, signed

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
        # Each process beats once it has started; on a loaded machine the last may be a moment behind.
        wait_for(lambda: len(status_json(paced_env)["processes"]) == 4, what="four heartbeats")
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
    # Taken over the run's own age (about 8 s at 50/s, plus the look after
    # it), not a whole minute, which would give 400 / 60 = 6.7.
    assert 10 < after["rate_per_second"] <= 60, after["rate_per_second"]
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


def test_jobs_claimed_between_heartbeats_are_not_counted_as_due_later(campaign, build, mock, role_env, real_redis):
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
    assert (odd["due_later"], odd["queued"], odd["retries"]) == (2, 0, 2)
    assert 20 <= odd["next_due_in_seconds"] <= 90  # the earlier of the two retries, not a lease (5 s)


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


# After sending: what receipts said, and re-sending what failed after acceptance


def receipt_store(campaign) -> ReceiptStore:
    return ReceiptStore(CampaignTable(campaign.target, "campaign_master_1", "column1", "column3"))


def sends(campaign) -> dict[int, tuple[str, float]]:
    """{row id: (message id, when its send was recorded, unix seconds)} of the latest sends."""
    return {
        row_id: (message_id, float(at))
        for row_id, message_id, at in campaign.query(
            "SELECT row_id, message_id, UNIX_TIMESTAMP(created_at) FROM delivery_attempts"
            " WHERE outcome = 'sent' ORDER BY id"
        )
    }


def test_the_funnel_counts_receipts_per_partition_with_delivery_times(campaign, role_env, mock, real_redis):
    campaign.add(22)
    campaign.add(2, phone=lambda i: "not-a-phone")  # rows 23, 24: failed, never sent
    store = receipt_store(campaign)
    store.opt_out(["6281200000002", "6281200000003"], "STOP", "meta")  # rows 3 and 4
    for module in ROLES:
        assert run_role(module, role_env, "--once").returncode == 0
    sent = sends(campaign)
    assert len(sent) == 20 and campaign.count(SENT) == 20
    rows = sorted(sent)
    delivered, read, failed = rows[:12], rows[:5], rows[12:15]
    # Delivered i + 1 seconds after the send: 1 s to 12 s; the read ones say so first.
    receipts = [Receipt(sent[r][0], "read", sent[r][1] + i + 1.5) for i, r in enumerate(read)]
    receipts += [Receipt(sent[r][0], "delivered", sent[r][1] + i + 1) for i, r in enumerate(delivered)]
    receipts += [Receipt(sent[r][0], "failed", sent[r][1] + 2, "131026", "undeliverable") for r in failed]
    receipts += [Receipt(sent[rows[15]][0], "sent", sent[rows[15]][1])]
    receipts += [Receipt("wamid.NOT-OURS", "delivered", None), Receipt("wamid.OTHER-CAMPAIGN", "read", None)]
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, message_id)"
        " VALUES ('campaign_other', 1, 1, 'sent', 'wamid.OTHER-CAMPAIGN')"
    )
    store.add("meta", receipts)
    assert store.match() == 17  # 16 of ours and the other campaign's

    after = status_json(role_env)["after_sending"]
    expected_by_partition = []
    for k in (0, 1):
        offsets = sorted(float(i + 1) for i, r in enumerate(delivered) if r % 2 == k)
        expected_by_partition.append(
            {
                "partition": f"{k}/2",
                "sent": sum(1 for r in rows if r % 2 == k),
                "delivered": sum(1 for r in delivered if r % 2 == k),
                "read": sum(1 for r in read if r % 2 == k),
                "failed_after_acceptance": sum(1 for r in failed if r % 2 == k),
                "opted_out": 1,
                "delivery_samples": len(offsets),
            }
        )
    for got, want in zip(after["partitions"], expected_by_partition):
        assert {key: got[key] for key in want} == want
    assert {key: after["total"][key] for key in expected_by_partition[0] if key != "partition"} == {
        "sent": 20,
        "delivered": 12,
        "read": 5,
        "failed_after_acceptance": 3,
        "opted_out": 2,
        "delivery_samples": 12,
    }
    # Nearest rank over 1..12 s: the 6th and the 12th.
    assert after["total"]["delivery_p50_seconds"] == pytest.approx(6.0, abs=0.01)
    assert after["total"]["delivery_p95_seconds"] == pytest.approx(12.0, abs=0.01)
    assert after["sample_limit"] == 10_000
    table = status(role_env)
    assert "After sending" in table
    total_line = [line for line in table.splitlines() if line.split()[:1] == ["total"]][-1]
    assert total_line.split() == ["total", "20", "12", "5", "3", "2", "6.0", "12.0"]


def test_the_delivery_times_are_taken_over_the_latest_delivered_only(campaign, role_env, mock, real_redis):
    campaign.add(6)
    for module in ROLES:
        assert run_role(module, role_env, "--once").returncode == 0
    sent = sends(campaign)
    store = receipt_store(campaign)
    store.add("meta", [Receipt(sent[r][0], "delivered", sent[r][1] + r) for r in sent])  # row r: r seconds
    store.match()
    assert store.delivery_seconds(2, limit=3) == {0: [4.0, 6.0], 1: [5.0]}  # rows 4, 5, 6
    assert store.delivery_seconds(2) == {0: [2.0, 4.0, 6.0], 1: [1.0, 3.0, 5.0]}


def test_a_signed_webhook_receipt_shows_in_the_status_api(role_env, campaign, mock, real_redis):
    campaign.add(2)
    for module in ROLES:
        assert run_role(module, role_env, "--once").returncode == 0
    sent = sends(campaign)
    process, url = serve(dict(role_env, META_APP_SECRET="meta-app-secret"))
    try:
        body = meta_status(sent[1][0], "read", int(sent[1][1]) + 3)
        assert post(url, "meta", body, signed("meta", body)).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = requests.get(f"{url}/api/status", timeout=5).json()["after_sending"]
            if after["total"]["read"]:
                break
            time.sleep(0.5)  # the writer stores it within 50 ms; the snapshot is shared for 2 s
    finally:
        stop(process)
    assert after["partitions"][1] | {"delivery_p50_seconds": None, "delivery_p95_seconds": None} == {
        "partition": "1/2",
        "sent": 1,
        "delivered": 1,
        "read": 1,
        "failed_after_acceptance": 0,
        "opted_out": 0,
        "delivery_p50_seconds": None,
        "delivery_p95_seconds": None,
        "delivery_samples": 1,
    }
    # Meta stamps whole seconds: 2 to 3 s after our record of the send.
    assert 2.0 <= after["partitions"][1]["delivery_p50_seconds"] <= 3.0
    assert after["partitions"][0]["delivered"] == 0


def test_resend_undelivered_sets_back_the_rows_whose_message_failed_and_they_go_out_with_a_new_key(
    campaign, build, mock, role_env, real_redis
):
    producer, consumer = build
    campaign.add(6)
    producers = [producer(index=k, full_scan_interval=0.01) for k in (0, 1)]
    consumers = [consumer(index=k) for k in (0, 1)]
    for p, c in zip(producers, consumers):
        p.loop()
        drain(c)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in range(1, 7)}
    sent = sends(campaign)
    store = receipt_store(campaign)
    store.add(
        "meta",
        [
            Receipt(sent[1][0], "failed", None, "131026", "undeliverable"),
            Receipt(sent[2][0], "failed", None, "131049", "ecosystem limit"),
            Receipt(sent[3][0], "delivered", None),
            Receipt(sent[4][0], "read", None),
        ],
    )
    store.match()
    usage = run_status(role_env, "resend", "--undelivered", "--reason", "x")
    assert usage.returncode == 2 and "--reason" in usage.stderr
    assert status(role_env, "resend", "--undelivered", "--partition", "1").strip() == (
        "set 1 sent row whose message failed after acceptance back to pending (partition 1/2);"
        " producers queue them within FULL_SCAN_INTERVAL"
    )
    assert campaign.states() == {1: PENDING, 2: SENT, 3: SENT, 4: SENT, 5: SENT, 6: SENT}
    assert status(role_env, "resend", "--undelivered").startswith("set 1 sent row whose")
    assert campaign.states() == {1: PENDING, 2: PENDING, 3: SENT, 4: SENT, 5: SENT, 6: SENT}
    assert status(role_env, "resend", "--undelivered").startswith("set 0 sent rows")  # pending ones are not touched
    assert campaign.failure_reasons() == {} and len(campaign.query("SELECT * FROM message_states")) == 4
    time.sleep(0.02)  # past the full scan interval: producers read the rows behind their walk
    for p, c in zip(producers, consumers):
        p.loop()
        drain(c)
    assert mock.deliveries() == {
        **{f"campaign_master_1:{i}": 1 for i in range(1, 7)},
        "campaign_master_1:1:1": 1,
        "campaign_master_1:2:1": 1,
    }
    assert campaign.count(SENT) == 6
    # Their latest message is the new one, which no receipt failed: nothing more to re-send.
    assert status(role_env, "resend", "--undelivered").startswith("set 0 sent rows")
    assert campaign.count(SENT) == 6
