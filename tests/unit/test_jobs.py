"""The Redis side of the queue, in fakeredis (its Lua runs through lupa)."""

import time

import pytest
import redis

from common.errors import ConfigError, ServiceUnavailable
from common.queue.jobs import Job, JobQueue, decode_job
from common.settings import Partition


def queue(client, index=1, of=2, prefix=""):
    return JobQueue(client, Partition(index, of), prefix)


def test_enqueue_queues_a_row_once(fake_redis):
    q = queue(fake_redis)
    assert q.enqueue([Job(1, "628100000001"), Job(3, "628100000003")]) == (2, 2)
    assert q.enqueue([Job(1, "628100000001"), Job(5, "628100000005")]) == (1, 3)
    assert fake_redis.get("job:1") == Job(1, "628100000001").encode()


def test_enqueue_keeps_the_attempt_count_of_a_queued_job(fake_redis):
    q = queue(fake_redis)
    fake_redis.set("job:7", Job(7, "628100000007", attempts=3).encode())
    q.enqueue([Job(7, "628100000007")])
    assert decode_job(7, fake_redis.get("job:7")).attempts == 3


def test_enqueue_restores_a_lost_due_entry(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001")])
    fake_redis.delete(q.due_key)
    q.enqueue([Job(1, "628100000001")])
    claims, *_ = q.claim(10, lease_seconds=5)
    assert [c.row_id for c in claims] == [1]


def test_a_claimed_job_is_not_claimed_again_until_its_lease_ends(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001")])
    first, *_ = q.claim(10, lease_seconds=0.2)
    second, *_ = q.claim(10, lease_seconds=0.2)
    assert [c.row_id for c in first] == [1] and second == []
    time.sleep(0.25)
    third, *_ = q.claim(10, lease_seconds=5)
    assert [c.row_id for c in third] == [1]


def test_a_claim_of_a_lapsed_lease_is_counted_as_a_reclaim(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001"), Job(3, "628100000003")])
    _, _, reclaimed, _ = q.claim(10, lease_seconds=0.05)
    assert reclaimed == 0
    time.sleep(0.1)
    again, _, reclaimed, _ = q.claim(10, lease_seconds=5)
    assert sorted(c.row_id for c in again) == [1, 3] and reclaimed == 2
    assert q.stats()["reclaimed"] == 2


def test_a_job_finished_or_put_back_is_not_reclaimed_later(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001"), Job(3, "628100000003")])
    claims, *_ = q.claim(10, lease_seconds=5)
    lease = {c.row_id: c.lease_until_ms for c in claims}
    q.finish([1], "sent")
    assert q.reschedule([(3, lease[3], 0, None)]) == 1
    q.enqueue([Job(1, "628100000001")])  # a producer's read from before the send
    _, _, reclaimed, _ = q.claim(10, lease_seconds=5)
    assert reclaimed == 0 and "reclaimed" not in q.stats()
    assert fake_redis.hlen(q.leased_key) == 2  # both claimed again, by this claim


def test_claim_respects_the_limit(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(i, "628100000001") for i in range(1, 20, 2)])
    claims, *_ = q.claim(3, lease_seconds=5)
    assert len(claims) == 3


def test_reschedule_only_moves_a_job_whose_lease_is_still_ours(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001")])
    mine, *_ = q.claim(1, lease_seconds=0.05)
    time.sleep(0.1)
    theirs, *_ = q.claim(1, lease_seconds=30)
    assert q.reschedule([(1, mine[0].lease_until_ms, 0, Job(1, "628100000001", attempts=1))]) == 0
    assert fake_redis.zscore(q.due_key, "1") == theirs[0].lease_until_ms
    assert decode_job(1, fake_redis.get("job:1")).attempts == 0
    assert q.reschedule([(1, theirs[0].lease_until_ms, 0, Job(1, "628100000001", attempts=1))]) == 1
    assert decode_job(1, fake_redis.get("job:1")).attempts == 1


def test_finish_removes_the_job_and_counts_it(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001"), Job(3, "628100000003")])
    q.finish([1, 3], "sent")
    assert fake_redis.exists("job:1", "job:3") == 0
    assert q.depth() == 0
    assert q.stats() == {"sent": 2}


def test_a_malformed_payload_is_claimed_without_a_job(fake_redis):
    q = queue(fake_redis)
    fake_redis.set("job:1", "not json")
    q.enqueue([Job(1, "628100000001")])
    claims, *_ = q.claim(10, lease_seconds=5)
    assert claims[0].row_id == 1 and claims[0].job is None


def test_a_key_of_another_type_is_claimed_without_a_job(fake_redis):
    q = queue(fake_redis)
    fake_redis.hset("job:1", "foreign", "value")
    q.enqueue([Job(1, "628100000001")])
    claims, *_ = q.claim(10, lease_seconds=5)
    assert claims[0].row_id == 1 and claims[0].job is None


def test_due_entries_that_are_not_row_ids_are_removed(fake_redis):
    q = queue(fake_redis)
    fake_redis.set("job:abc", "{}")
    fake_redis.zadd(q.due_key, {"abc": 0})
    claims, foreign, *_ = q.claim(10, lease_seconds=5)
    assert claims == [] and foreign == ["abc"]
    assert q.depth() == 0


def test_a_due_entry_without_its_job_key_is_dropped(fake_redis):
    q = queue(fake_redis)
    fake_redis.zadd(q.due_key, {"9": 0})
    claims, *_ = q.claim(10, lease_seconds=5)
    assert claims == [] and q.depth() == 0


def test_partitions_and_prefixes_use_separate_keys(fake_redis):
    odd, even, other = queue(fake_redis, 1), queue(fake_redis, 0), queue(fake_redis, 1, prefix="c2:")
    odd.enqueue([Job(1, "628100000001")])
    assert even.claim(10, 5)[0] == [] and other.claim(10, 5)[0] == []
    assert [c.row_id for c in odd.claim(10, 5)[0]] == [1]


def test_decode_job_refuses_foreign_values():
    assert decode_job(1, '{"phone": "6281", "attempts": 2}') == Job(1, "6281", 2)
    for raw in ["", "[]", '{"attempts": 1}', '{"phone": 5}', '"text"', '{"phone": "1", "attempts": "x"}']:
        assert decode_job(1, raw) is None, raw


def test_extend_only_renews_leases_that_are_still_ours(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001"), Job(3, "628100000003")])
    claims, *_ = q.claim(10, lease_seconds=5)
    leases = {c.row_id: c.lease_until_ms for c in claims}
    fake_redis.zadd(q.due_key, {"3": 42})  # row 3's lease lapsed and was claimed elsewhere
    extended, lease = q.extend(leases, lease_seconds=15)
    assert extended == {1}
    assert fake_redis.zscore(q.due_key, "1") == lease.until_ms >= leases[1] + 10_000
    assert fake_redis.zscore(q.due_key, "3") == 42


def test_leases_and_due_times_are_on_redis_clock_whatever_the_host_clock_says(fake_redis, monkeypatch):
    q = queue(fake_redis)
    monkeypatch.setattr("common.queue.jobs.now_ms", lambda: 0)  # a host clock far behind Redis's
    q.enqueue([Job(1, "628100000001")])
    redis_now = int(fake_redis.time()[0]) * 1000
    assert abs(fake_redis.zscore(q.due_key, "1") - redis_now) < 2000
    claims, _, _, lease = q.claim(10, lease_seconds=60)
    assert [c.row_id for c in claims] == [1]
    assert abs(lease.until_ms - (redis_now + 60_000)) < 2000
    assert abs(lease.clock_offset_ms - redis_now) < 2000  # what a lease keeper adds to its own clock
    assert q.reschedule([(1, lease.until_ms, 5000, None)]) == 1
    assert abs(fake_redis.zscore(q.due_key, "1") - (redis_now + 5000)) < 2000


def test_remember_sent_marks_the_job_and_survives_a_decode(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001", attempts=2)])
    q.remember_sent([Job(1, "628100000001", attempts=2)])
    assert decode_job(1, fake_redis.get("job:1")) == Job(1, "628100000001", 2, sent=True)


def test_a_remembered_send_keeps_its_message_id_and_sender(fake_redis):
    q = queue(fake_redis)
    q.enqueue([Job(1, "628100000001")])
    q.remember_sent([Job(1, "628100000001", message_id="wamid.A1", sender="meta:s1")])
    kept = Job(1, "628100000001", sent=True, message_id="wamid.A1", sender="meta:s1")
    assert decode_job(1, fake_redis.get("job:1")) == kept


def test_remember_sent_does_not_recreate_a_finished_job(fake_redis):
    q = queue(fake_redis)
    q.remember_sent([Job(1, "628100000001")])
    assert fake_redis.exists("job:1") == 0


def test_a_jobs_message_variables_survive_the_round_trip():
    job = Job(3, "628100000003", 2, params={"column2": "Ana"})
    assert decode_job(3, job.encode()) == job
    assert decode_job(3, '{"phone": "628100000003", "params": {"column2": 5}}') is None  # not ours


@pytest.mark.parametrize(
    "refusal",
    [
        redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        redis.ReadOnlyError("You can't write against a read only replica."),
        redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"),
        redis.ResponseError("BUSY Redis is busy running a script."),
        redis.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.ConnectionError("Connection refused"),
        redis.TimeoutError("Timeout reading from socket"),
    ],
)
def test_every_redis_refusal_but_credentials_means_wait_and_retry(fake_redis, refusal):
    def refuse():
        raise refusal

    with pytest.raises(ServiceUnavailable, match="Redis is (unavailable|unreachable)"):
        queue(fake_redis)._call("claim", refuse)


def test_refused_credentials_are_a_configuration_error(fake_redis):
    def refuse():
        raise redis.AuthenticationError("WRONGPASS invalid username-password pair")

    with pytest.raises(ConfigError, match="refused the credentials"):
        queue(fake_redis)._call("claim", refuse)
