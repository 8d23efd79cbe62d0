"""The pipeline on the real MariaDB, Redis and mock endpoint, roles run in-process."""

import threading
import time

import pytest

from common.queue.jobs import Job
from common.store.campaign import FAILED, PENDING, SENT
from tests.conftest import drain, drain_queue

pytestmark = pytest.mark.integration


def test_odd_and_even_producers_queue_only_their_own_rows(campaign, build, real_redis):
    producer, _ = build
    ids = campaign.add(10)
    producer(index=1).loop()
    odd = {int(i) for i in real_redis.zrange("due:2:1", 0, -1)}
    assert odd == {i for i in ids if i % 2 == 1}
    producer(index=0).loop()
    even = {int(i) for i in real_redis.zrange("due:2:0", 0, -1)}
    assert even == {i for i in ids if i % 2 == 0}


def test_generic_partitions_split_rows_without_overlap(campaign, build, real_redis):
    producer, _ = build
    ids = campaign.add(30)
    seen = []
    for k in range(3):
        producer(index=k, of=3).loop()
        seen += [int(i) for i in real_redis.zrange(f"due:3:{k}", 0, -1)]
    assert sorted(seen) == sorted(ids)


def test_polling_again_does_not_queue_a_row_twice(campaign, build, real_redis):
    producer, _ = build
    campaign.add(20)
    first, second = producer(batch_size=3), producer(batch_size=3)  # several pages per poll
    first.loop()
    second.loop()  # a second copy reads every row again: SET NX keeps one job each
    first.loop()
    assert real_redis.zcard("due:2:1") == 10
    assert len(real_redis.keys("job:*")) == 10


def ids_queued(real_redis) -> set[int]:
    return {int(member) for member in real_redis.zrange("due:2:1", 0, -1)}


def test_a_poll_reads_only_rows_after_the_last_one_it_queued(campaign, build, real_redis):
    producer, _ = build
    first = [i for i in campaign.add(10) if i % 2 == 1]
    p = producer(batch_size=3, full_scan_interval=3600)
    p.loop()
    newer = [i for i in campaign.add(10) if i % 2 == 1]
    campaign.query("UPDATE campaign_master_1 SET column3 = 0 WHERE id = %s", (first[0],))
    real_redis.delete(f"job:{first[0]}")
    real_redis.zrem("due:2:1", first[0])
    campaign.query("UPDATE campaign_master_1 SET column3 = 1 WHERE id = %s", (first[0],))  # pending again, behind
    p.loop()
    assert ids_queued(real_redis) == set(first[1:] + newer)  # the new rows, not the one behind the walk


def test_a_full_scan_requeues_rows_that_became_pending_behind_the_walk(campaign, build, real_redis):
    producer, _ = build
    ids = [i for i in campaign.add(10) if i % 2 == 1]
    p = producer(full_scan_interval=0.2)
    p.loop()
    real_redis.delete(f"job:{ids[0]}")
    real_redis.zrem("due:2:1", ids[0])
    time.sleep(0.3)
    p.loop()
    assert ids_queued(real_redis) == set(ids)


def test_after_redis_lost_the_queue_the_next_poll_queues_every_pending_row(campaign, build, real_redis):
    producer, _ = build
    ids = [i for i in campaign.add(10) if i % 2 == 1]
    p = producer(full_scan_interval=3600)
    p.loop()
    real_redis.flushdb()  # what a restart without persistence leaves
    p.loop()
    assert ids_queued(real_redis) == set(ids)


def test_the_producer_pages_through_a_table_larger_than_a_batch(campaign, build, real_redis):
    producer, _ = build
    campaign.add(1000)
    producer(batch_size=7).loop()
    assert real_redis.zcard("due:2:1") == 500


def test_the_producer_stops_filling_at_max_queued(campaign, build, real_redis):
    producer, _ = build
    campaign.add(100)
    producer(batch_size=10, max_queued=20).loop()
    assert real_redis.zcard("due:2:1") == 20


def test_every_row_is_sent_once_and_marked(campaign, build, mock, real_redis):
    producer, consumer = build
    ids = campaign.add(40)
    for k in (0, 1):
        producer(index=k).loop()
        drain(consumer(index=k))
    assert campaign.count(SENT) == 40
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}
    assert real_redis.keys("job:*") == []


def test_a_row_finished_while_a_stale_batch_requeues_it_is_not_resent(campaign, build, mock):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    producer().loop()
    drain(consumer())
    assert mock.stats()["delivered"] == 1
    # A producer that read the row before it was sent queues it again.
    stale = producer()
    stale.queue.enqueue([Job(row, "628100000000")])
    drain(consumer())
    assert mock.stats()["delivered"] == 1
    assert stale.queue.depth() == 0


def test_two_consumers_on_one_partition_never_repeat_a_send(campaign, build, mock):
    producer, consumer = build
    campaign.add(400)
    producer(batch_size=500).loop()
    mock.configure(latency_ms=5)
    a, b = consumer(concurrency=8, batch_size=20), consumer(concurrency=8, batch_size=20)
    threads = [threading.Thread(target=drain, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.queue.stats()["sent"] == 200
    assert mock.stats()["duplicates"] == 0 and mock.stats()["delivered"] == 200


def test_a_500_then_200_is_retried_and_sent_once(campaign, build, mock):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    mock.configure(fail_first=1, fail_status=500)
    producer().loop()
    drain_queue(consumer())
    assert campaign.states()[row] == SENT
    assert mock.stats()["by_status"] == {"500": 1, "200": 1}
    assert mock.deliveries() == {f"campaign_master_1:{row}": 1}


def test_a_429_waits_at_least_its_retry_after(campaign, build, mock, real_redis):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    mock.configure(fail_first=1, fail_status=429, retry_after=30)
    producer().loop()
    drain(consumer())
    assert campaign.states()[row] == PENDING
    due_in = real_redis.zscore("due:2:1", str(row)) / 1000 - time.time()
    assert 25 < due_in <= 31


def test_a_permanent_400_fails_the_row_after_one_try(campaign, build, mock):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    mock.configure(fail_first=99, fail_status=400)
    producer().loop()
    drain(consumer())
    assert campaign.states()[row] == FAILED
    assert mock.stats()["requests"] == 1
    assert campaign.failure_reasons()[row].startswith("HTTP 400")


def test_after_max_attempts_the_row_is_failed_not_pending(campaign, build, mock, real_redis):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    mock.configure(fail_first=99, fail_status=503)
    producer().loop()
    drain_queue(consumer(max_attempts=3))
    assert campaign.states()[row] == FAILED
    assert mock.stats()["requests"] == 3
    assert real_redis.keys("job:*") == []


def test_a_timeout_is_retried_with_the_same_idempotency_key(campaign, build, mock):
    producer, consumer = build
    [row] = [i for i in campaign.add(2) if i % 2 == 1]
    mock.configure(timeout_rate=1.0, hang_seconds=2)
    producer().loop()
    c = consumer(request_timeout=0.5, lease_seconds=3)
    drain(c)
    assert campaign.states()[row] == PENDING
    mock.configure(timeout_rate=0.0)
    drain_queue(c)
    assert campaign.states()[row] == SENT
    assert mock.deliveries() == {f"campaign_master_1:{row}": 1}


def test_invalid_phones_fail_with_a_reason_and_are_never_sent(campaign, build, mock):
    producer, consumer = build
    ids = campaign.add(4, phone=lambda i: ["", "abc", "628100000001", None][i])
    for k in (0, 1):
        producer(index=k).loop()
        drain(consumer(index=k))
    states = campaign.states()
    assert [states[i] for i in ids] == [FAILED, FAILED, SENT, FAILED]
    assert mock.stats()["delivered"] == 1
    assert set(campaign.failure_reasons()) == {ids[0], ids[1], ids[3]}


def test_national_numbers_go_out_in_e164_only_with_a_default_region(campaign, build, mock):
    producer, consumer = build
    ids = campaign.add(4, phone=lambda i: ["0812-3456-7890", "0812 3456 7891", "0812-3456-7892", "(0812) 34567893"][i])
    for k in (0, 1):
        producer(index=k).loop()
    drain(consumer(index=1, default_region="ID"))  # odd rows: read as Indonesian numbers
    drain(consumer(index=0))  # even rows: no region, so a national number is refused, not guessed
    odd = [i for i in ids if i % 2 == 1]
    even = [i for i in ids if i % 2 == 0]
    assert mock.recipients() == {f"628123456789{n}": 1 for n, row in enumerate(ids) if row % 2 == 1}
    assert all(campaign.states()[i] == SENT for i in odd)
    assert all(campaign.states()[i] == FAILED for i in even)
    assert all("no default region" in reason for reason in campaign.failure_reasons().values())
