"""A deliberate re-send is a new message: its idempotency key carries the
row's send generation, kept in MySQL. Retries of one send keep their key."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.store.campaign import FAILED, PENDING, SENT, Attempt, Failure
from tests.conftest import drain, drain_queue

pytestmark = pytest.mark.integration


def test_a_row_set_back_to_pending_is_sent_again_with_a_new_key(campaign, build, mock):
    producer, consumer = build
    campaign.add(2)
    p, c = producer(full_scan_interval=0.01), consumer()
    p.loop()
    drain(c)
    for _ in range(2):
        campaign.query("UPDATE campaign_master_1 SET column3 = 1 WHERE id = 1")  # the README's way to re-send
        time.sleep(0.02)  # past the full scan interval: the producer reads the row behind its walk
        p.loop()
        drain(c)
    assert campaign.states()[1] == SENT
    assert mock.deliveries() == {"campaign_master_1:1": 1, "campaign_master_1:1:1": 1, "campaign_master_1:1:2": 1}


def test_retries_of_one_send_keep_its_key(campaign, build, mock):
    producer, consumer = build
    campaign.add(2)
    mock.configure(fail_first=2, fail_status=503)
    producer().loop()
    c = consumer()
    drain_queue(c)
    assert campaign.states()[1] == SENT
    assert mock.deliveries() == {"campaign_master_1:1": 1}
    assert mock.stats()["requests"] == 3


def test_recording_one_row_twice_raises_its_generation_once(campaign, table_for, settings_for):
    campaign.add(2)
    table = table_for(settings_for())
    table.record([1], [], [])
    table.record([1], [], [])  # a second consumer in the documented repeat window
    assert campaign.query("SELECT row_id, generation FROM send_generations") == ((1, 1),)


def test_a_failure_recorded_for_a_row_another_consumer_sent_gives_it_no_reason(campaign, table_for, settings_for):
    campaign.add(3)
    table = table_for(settings_for())
    table.record([1], [], [])  # the other consumer in the documented repeat window
    table.record([], [Failure(1, 1, "timed out", None), Failure(2, 3, "HTTP 400: bad", 400)], [])
    assert [campaign.states()[i] for i in (1, 2, 3)] == [SENT, FAILED, PENDING]
    assert campaign.failure_reasons() == {2: "HTTP 400: bad"}
    assert campaign.query("SELECT row_id, generation FROM send_generations ORDER BY row_id") == ((1, 1), (2, 1))


def test_a_batch_is_recorded_with_its_reasons_and_history_in_one_go(campaign, table_for, settings_for):
    campaign.add(3)
    table = table_for(settings_for())
    history = [
        Attempt(1, 1, "sent", 200, "wamid.1", None, 12, "meta"),
        Attempt(2, 1, "retry", 503, None, "HTTP 503", 40, "meta"),
        Attempt(2, 2, "failed", 400, None, "HTTP 400: bad", 30, "meta"),
    ]
    table.record([1], [Failure(2, 2, "HTTP 400: bad", 400)], history)
    assert [campaign.states()[i] for i in (1, 2, 3)] == [SENT, FAILED, PENDING]
    assert campaign.failure_reasons() == {2: "HTTP 400: bad"}
    assert campaign.query("SELECT row_id, generation FROM send_generations ORDER BY row_id") == ((1, 1), (2, 1))
    lines = campaign.query("SELECT row_id, attempt, outcome, message_id FROM delivery_attempts ORDER BY id")
    assert lines == ((1, 1, "sent", "wamid.1"), (2, 1, "retry", None), (2, 2, "failed", None))


def test_resend_failed_sets_back_the_rows_asked_for_and_they_go_out_with_new_keys(
    campaign, build, mock, table_for, settings_for
):
    producer, consumer = build
    ids = campaign.add(6, phone=lambda i: "not a phone" if i < 4 else f"62812{i:08d}")
    p, c = producer(full_scan_interval=0.01), consumer()
    p.loop()
    drain(c)
    failed = [i for i in ids[:4] if i % 2 == 1]
    assert [campaign.states()[i] for i in failed] == [FAILED, FAILED]
    campaign.query("UPDATE campaign_master_1 SET column1 = '6281234567801' WHERE id IN %s", (failed,))
    table = table_for(settings_for())
    assert table.resend_failed(reason="no such reason") == 0
    assert table.resend_failed(reason="characters other than digits", partition=(1, 2)) == 2
    assert campaign.failure_reasons() == {}
    time.sleep(0.02)
    p.loop()
    drain(c)
    assert [campaign.states()[i] for i in failed] == [SENT, SENT]
    assert {key for key in mock.deliveries() if key.endswith(":1")} == {f"campaign_master_1:{i}:1" for i in failed}
    assert campaign.count(PENDING) == 3  # the even rows: no even consumer ran


def test_two_consumers_recording_the_same_rows_at_once_raise_each_generation_once(campaign, table_for, settings_for):
    ids = campaign.add(3000)
    tables = [table_for(settings_for()), table_for(settings_for())]
    for batch in (ids[first : first + 100] for first in range(0, len(ids), 100)):
        start = threading.Barrier(2)

        def record(table, batch=batch, start=start):
            start.wait()
            table.record(batch, [], [])

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(record, table) for table in tables]:
                done.result()  # neither raised (no deadlock, no lock wait timeout)
    generations = campaign.query("SELECT row_id, generation FROM send_generations")
    assert sorted(generations) == [(i, 1) for i in ids]


def test_two_consumers_recording_the_same_rows_with_opposite_outcomes_never_deadlock(campaign, table_for, settings_for):
    """In the repeat window the two sends of one row can end differently
    (one timed out, one answered): each consumer's batch mixes sent and
    failed rows the other has the other way round."""
    ids = campaign.add(3000)
    tables = [table_for(settings_for()), table_for(settings_for())]
    for batch in (ids[first : first + 100] for first in range(0, len(ids), 100)):
        start = threading.Barrier(2)
        halves = (batch[:50], batch[50:])

        def record(table, sent, failed, start=start):
            start.wait()
            table.record(sent, [Failure(i, 3, "timed out") for i in failed], [])

        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(record, tables[0], *halves), pool.submit(record, tables[1], *reversed(halves))]
            for done in runs:
                done.result()  # neither raised (no deadlock, no lock wait timeout)
    assert sorted(campaign.query("SELECT row_id, generation FROM send_generations")) == [(i, 1) for i in ids]
    states = campaign.states()
    assert campaign.count(PENDING) == 0
    assert set(campaign.failure_reasons()) == {i for i in ids if states[i] == FAILED}  # no reason on a sent row
