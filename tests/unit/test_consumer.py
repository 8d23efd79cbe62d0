"""The consumer's bookkeeping, with fakeredis, an in-memory table and a scripted sender."""

import asyncio
import threading

import pytest

from common.delivery.sender import Outcome, SendResult
from common.errors import ServiceUnavailable
from common.process.consumer import Consumer
from common.queue.jobs import Job, JobQueue, decode_job
from common.settings import MySQLTarget, Partition, Settings
from common.store.campaign import FAILED, PENDING, SENT, Row, RowRejected


class MemoryTable:
    """The campaign table's interface over a dict; it checks, when a row is
    marked sent, that the job key is still in Redis (MySQL first, then Redis)."""

    def __init__(self, redis, rows):
        self.redis = redis
        self.status = {row_id: PENDING for row_id in rows}
        self.phones = dict(rows)
        self.failures = {}
        self.sent_while_queued = []
        self.history = []
        self.down = False

    def pending_among(self, ids):
        return {i: Row(i, self.phones[i]) for i in ids if self.status.get(i) == PENDING}

    def record(self, sent, failures, history):
        if self.down and (sent or failures or history):
            raise ServiceUnavailable("MySQL is unreachable")
        for i in sent:
            self.sent_while_queued.append(self.redis.exists(f"job:{i}") == 1)
            self.status[i] = SENT
        for f in failures:
            self.status[f.row_id] = FAILED
            self.failures[f.row_id] = f
        self.history.extend(history)

    def close(self):
        pass


class NoOptOuts:
    """Nobody opted out (the opt-out list is tested on MySQL)."""

    def create_tables(self, *tables):
        pass

    def opted_out_among(self, phones):
        return set()


class ScriptedSender:
    name = "scripted"

    def __init__(self, *results):
        self.results = list(results)
        self.sent = []

    async def send(self, message):
        self.sent.append(message)
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]

    def close(self):
        pass


class RaisingSender(ScriptedSender):
    async def send(self, message):
        self.sent.append(message)
        raise RuntimeError("a bug in a sender")


def make_consumer(fake_redis, rows, sender, **overrides):
    values = dict(
        database=MySQLTarget("h", 3306, "u", "", "d"),
        redis_url="redis://x",
        partition=Partition(1, 2),
        retry_delay=0,
        max_attempts=3,
        concurrency=2,
    )
    values.update(overrides)
    settings = Settings(**values)
    queue = JobQueue(fake_redis, settings.partition)
    queue.enqueue([Job(row_id, phone) for row_id, phone in rows.items()])
    table = MemoryTable(fake_redis, rows)
    return Consumer(settings, table, queue, [sender], NoOptOuts()), table, queue


def run_until_idle(consumer, cycles=50):
    for _ in range(cycles):
        if not consumer.loop() and not consumer.ended:
            consumer.record()
            return
    raise AssertionError("consumer did not settle")


def test_sent_rows_are_marked_in_mysql_before_their_job_is_deleted(fake_redis):
    consumer, table, queue = make_consumer(
        fake_redis, {1: "628100000001", 3: "628100000003"}, ScriptedSender(SendResult(Outcome.SENT, 200))
    )
    run_until_idle(consumer)
    assert table.status == {1: SENT, 3: SENT}
    assert table.sent_while_queued == [True, True]
    assert fake_redis.exists("job:1", "job:3") == 0 and queue.depth() == 0
    consumer.shutdown()


def test_a_retry_counts_the_attempt_and_waits(fake_redis):
    consumer, table, queue = make_consumer(
        fake_redis, {1: "628100000001"}, ScriptedSender(SendResult(Outcome.RETRY, 500, "HTTP 500")), retry_delay=60
    )
    run_until_idle(consumer)
    assert table.status == {1: PENDING}
    assert decode_job(1, fake_redis.get("job:1")).attempts == 1
    assert queue.claim(10, 5)[0] == []  # not due for about a minute
    consumer.shutdown()


def test_the_row_fails_after_max_attempts(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.RETRY, 503, "HTTP 503"))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, sender)
    run_until_idle(consumer)
    assert len(sender.sent) == 3
    assert table.status == {1: FAILED} and table.failures[1].attempts == 3
    assert queue.depth() == 0 and queue.stats()["failed"] == 1
    consumer.shutdown()


def test_a_refused_sender_keeps_the_row_pending_and_pauses(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENDER_DOWN, 401, "HTTP 401"))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001", 3: "628100000003"}, sender)
    run_until_idle(consumer)
    assert table.status == {1: PENDING, 3: PENDING} and table.failures == {}
    assert not consumer.may_claim()
    assert decode_job(1, fake_redis.get("job:1")).attempts == 0
    assert len(queue.claim(10, 5)[0]) == 2  # handed back at once, for when the sender recovers
    consumer.shutdown()


def test_an_invalid_phone_fails_without_a_send(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200))
    consumer, table, _ = make_consumer(fake_redis, {1: "not-a-phone", 3: "628100000003"}, sender)
    run_until_idle(consumer)
    assert [m.row_id for m in sender.sent] == [3]
    assert table.status[1] == FAILED and "digits" in table.failures[1].reason
    consumer.shutdown()


def test_a_job_whose_row_is_no_longer_pending_is_dropped_unsent(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, sender)
    table.status[1] = SENT
    run_until_idle(consumer)
    assert sender.sent == [] and queue.depth() == 0 and queue.stats() == {"dropped": 1}
    consumer.shutdown()


def test_a_malformed_job_is_rebuilt_from_its_row(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200))
    consumer, table, _ = make_consumer(fake_redis, {1: "628100000001"}, sender)
    fake_redis.set("job:1", "garbage")
    run_until_idle(consumer)
    assert [m.phone for m in sender.sent] == ["628100000001"] and table.status[1] == SENT
    consumer.shutdown()


def test_a_2xx_is_kept_in_redis_while_mysql_is_away_and_never_resent(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, sender)
    table.down = True
    with pytest.raises(ServiceUnavailable):
        for _ in range(20):
            consumer.loop()
    assert decode_job(1, fake_redis.get("job:1")).sent
    consumer.shutdown()  # dies before MySQL is back; its lease is left to lapse
    fake_redis.zadd(queue.due_key, {"1": 0})
    table.down = False
    successor, _, _ = make_consumer(fake_redis, {}, sender)
    successor.table = table
    run_until_idle(successor)
    assert len(sender.sent) == 1
    assert table.status[1] == SENT and fake_redis.exists("job:1") == 0
    successor.shutdown()


def test_every_attempt_goes_into_the_history(fake_redis):
    sender = ScriptedSender(
        SendResult(Outcome.RETRY, 500, "HTTP 500"), SendResult(Outcome.SENT, 200, message_id="wamid.X")
    )
    consumer, table, _ = make_consumer(fake_redis, {1: "628100000001"}, sender)
    run_until_idle(consumer)
    run_until_idle(consumer)
    assert [(a.attempt, a.outcome, a.http_status) for a in table.history] == [(1, "retry", 500), (2, "sent", 200)]
    assert table.history[1].message_id == "wamid.X" and table.history[1].latency_ms is not None
    consumer.shutdown()


def test_a_redis_error_after_the_mysql_write_does_not_write_the_history_again(fake_redis, monkeypatch):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200, message_id="wamid.X"))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, sender)
    finish = queue.finish
    refusals = iter([ServiceUnavailable("Redis is unreachable")])

    def finish_after_one_refusal(ids, outcome):
        refusal = next(refusals, None)
        if refusal and ids:
            raise refusal
        return finish(ids, outcome)

    monkeypatch.setattr(queue, "finish", finish_after_one_refusal)
    with pytest.raises(ServiceUnavailable):
        run_until_idle(consumer)
    assert table.status == {1: SENT} and fake_redis.exists("job:1") == 1  # MySQL written, Redis not yet
    consumer.record()
    assert fake_redis.exists("job:1") == 0
    assert [(a.row_id, a.outcome, a.message_id) for a in table.history] == [(1, "sent", "wamid.X")]
    consumer.shutdown()


def test_a_failure_reason_mysql_refuses_never_costs_the_sends_of_its_batch(fake_redis):
    sender = ScriptedSender(SendResult(Outcome.SENT, 200), SendResult(Outcome.FAILED, 400, "HTTP 400: bad"))
    consumer, table, _ = make_consumer(fake_redis, {1: "628100000001", 3: "628100000003"}, sender)
    write = table.record

    def refusing_reasons(sent, failures, history):
        if failures:
            raise RowRejected("Incorrect string value")
        write(sent, failures, history)

    table.record = refusing_reasons
    with pytest.raises(RowRejected):
        run_until_idle(consumer)
    assert table.status == {1: SENT, 3: PENDING}
    assert [(a.row_id, a.outcome) for a in table.history] == [(1, "sent"), (3, "failed")]
    table.record = write
    consumer.shutdown()


def test_a_sender_that_raises_costs_an_attempt_not_the_row(fake_redis):
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, RaisingSender(None), retry_delay=60)
    run_until_idle(consumer)
    assert table.status == {1: PENDING}
    assert decode_job(1, fake_redis.get("job:1")).attempts == 1
    consumer.shutdown()


class GatedSender(ScriptedSender):
    """Holds every send until the test opens the gate."""

    def __init__(self, *results):
        super().__init__(*results)
        self.gate = threading.Event()

    async def send(self, message):
        await asyncio.to_thread(self.gate.wait, 5)
        return await super().send(message)


def test_a_job_queued_again_while_its_send_is_in_flight_is_not_started_twice(fake_redis):
    sender = GatedSender(SendResult(Outcome.SENT, 200))
    consumer, table, queue = make_consumer(fake_redis, {1: "628100000001"}, sender)
    consumer.loop()
    assert consumer.in_flight  # the send waits at the gate
    fake_redis.flushall()  # Redis restarted empty; a producer queues the row again
    queue.enqueue([Job(1, "628100000001")])
    consumer.loop()
    sender.gate.set()
    run_until_idle(consumer)
    assert len(sender.sent) == 1 and table.status == {1: SENT}
    consumer.shutdown()
