"""Gateway answers real gateways give, on the real MariaDB, Redis and mock:
each ends in a defined outcome for its row, never an exception out of the loop."""

import signal
import time

import pytest
import requests

from common.delivery.sender import MAX_RETRY_AFTER
from common.store.campaign import PENDING, SENT
from tests.conftest import drain, drain_queue, start_role
from tests.integration.test_processes import stop, wait_for

pytestmark = pytest.mark.integration


def use_up_first_attempts(mock, ids):
    """With fail_first=1, spend these rows' one failing attempt, so their next send is a 2xx."""
    for row_id in ids:
        requests.post(
            f"{mock.url}/test_camp",
            json={"to": "628100000000"},
            headers={"Idempotency-Key": f"campaign_master_1:{row_id}"},
            timeout=5,
        )


@pytest.mark.parametrize(
    "retry_after,waits_a_day",
    [
        ("1e999", True),
        ("inf", True),
        ("99999999", True),
        ("nan", False),
        ("-5", False),
        ("Wed, 21 Oct 2015 07:28:00 GMT", False),
        ("garbage", False),
    ],
)
def test_a_429_with_any_retry_after_leaves_the_2xx_of_its_batch_recorded(
    campaign, build, mock, real_redis, retry_after, waits_a_day
):
    producer, consumer = build
    ids = [i for i in campaign.add(20) if i % 2 == 1]
    mock.configure(fail_first=1, fail_status=429, retry_after=retry_after)
    use_up_first_attempts(mock, ids[:5])
    producer().loop()
    c = consumer(batch_size=50)
    drain(c)
    states = campaign.states()
    assert [states[i] for i in ids[:5]] == [SENT] * 5
    if waits_a_day:  # the gateway's wish, capped at a day
        assert [states[i] for i in ids[5:]] == [PENDING] * 5
        now_ms = time.time() * 1000
        for row_id in ids[5:]:
            assert (
                now_ms + (MAX_RETRY_AFTER - 60) * 1000
                <= real_redis.zscore("due:2:1", row_id)
                <= now_ms + MAX_RETRY_AFTER * 1000
            )
    else:  # unreadable or past: our own backoff
        drain_queue(c)
        assert campaign.count(PENDING) == 10  # the even rows only
    assert sorted(mock.deliveries().values()) == [1] * len(mock.deliveries())


@pytest.mark.parametrize(
    "body,message_id",
    [
        ('{"messages":[{"id":123456789}]}', "123456789"),
        ('{"messages":[{"id":"' + "x" * 129 + '"}]}', None),
        ('{"messages":[{"id":["a"]}]}', None),
        ('{"messages":[{"id":"wamid.\\ud800"}]}', "wamid.?"),
        ("[" * 100_000 + "]" * 100_000, None),
        ('{"messages": "\xff\xfe not an id"}', None),
    ],
)
def test_any_2xx_body_is_one_send_recorded_once(campaign, build, mock, body, message_id):
    producer, consumer = build
    ids = [i for i in campaign.add(6) if i % 2 == 1]
    mock.configure(success_body=body)
    producer().loop()
    drain(consumer())
    assert campaign.count(PENDING) == 3  # the even rows only
    assert sorted(mock.deliveries().values()) == [1, 1, 1]
    history = campaign.query("SELECT row_id, outcome, message_id FROM delivery_attempts ORDER BY row_id")
    assert history == tuple((row_id, "sent", message_id) for row_id in ids)


def test_a_trickled_body_is_held_to_the_request_deadline(campaign, build, mock):
    producer, consumer = build
    campaign.add(2)
    mock.configure(trickle_seconds=20)
    producer().loop()
    c = consumer(request_timeout=1.0, max_attempts=1)
    started = time.monotonic()
    drain(c)
    assert time.monotonic() - started < 5
    ((latency, error),) = campaign.query("SELECT latency_ms, error FROM delivery_attempts")
    assert 900 <= latency < 2000 and error == "timed out"


@pytest.mark.parametrize("engine", ["requests", "urllib3", "aiohttp"])
def test_sigterm_during_a_trickled_answer_exits_within_the_deadline(campaign, role_env, mock, engine):
    campaign.add(2)
    mock.configure(trickle_seconds=30)
    env = {**role_env, "WHATSAPP_TIMEOUT": "2", "HTTP_ENGINE": engine}
    producer = start_role("producers.odd", env)
    consumer = start_role("consumers.odd", env)
    try:
        wait_for(lambda: mock.stats()["delivered"] >= 1, what="a send answered")
        started = time.monotonic()
        code, err = stop(consumer, signal.SIGTERM, timeout=10)
        took = time.monotonic() - started
    finally:
        stop(producer)
    assert code == 0 and took < 4.5, (code, took, err)  # inside honcho's 5 s
    assert "Traceback" not in err
    ((outcome, error),) = campaign.query("SELECT outcome, error FROM delivery_attempts")
    assert outcome == "retry" and error  # recorded before exit: the retry carries the same key


def test_an_oversized_answer_is_read_only_up_to_its_limit(campaign, build, mock):
    producer, consumer = build
    campaign.add(2)
    mock.configure(success_body='{"messages":[{"id":"wamid.big"}],"pad":"' + "x" * (3 << 20) + '"}')
    producer().loop()
    drain(consumer())
    assert campaign.count(PENDING) == 1  # the even row
    assert campaign.query("SELECT outcome, message_id FROM delivery_attempts") == (("sent", None),)
