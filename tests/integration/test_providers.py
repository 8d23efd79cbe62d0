"""Providers over loopback against the real mock, which answers like the
WhatsApp Cloud API: the meta dialect end to end, on the real MariaDB and Redis."""

import time

import pytest

from common.queue.jobs import decode_job
from common.store.campaign import PENDING, SENT
from tests.conftest import drain_queue

pytestmark = pytest.mark.integration

META = dict(provider="meta", meta_phone_number_id="1055", whatsapp_token="tok", max_attempts=5)


def test_meta_sends_each_row_once_retries_a_131000_and_records_the_wamid(campaign, build, mock):
    producer, consumer = build
    mock.configure(token="tok", fail_first=1, fail_status=500)  # answered with Meta error 131000
    ids = [i for i in campaign.add(6) if i % 2 == 1]
    producer().loop()
    drain_queue(consumer(meta_base_url=mock.url, **META), timeout=30)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}
    assert all(campaign.states()[i] == SENT for i in ids)
    outcomes = campaign.query("SELECT outcome, message_id FROM delivery_attempts ORDER BY id")
    assert sorted(o for o, _ in outcomes) == ["retry"] * 3 + ["sent"] * 3
    assert all(m.startswith("wamid.") for o, m in outcomes if o == "sent")


def test_meta_token_error_190_stops_the_sender_and_keeps_rows_pending(campaign, build, mock, real_redis):
    producer, consumer = build
    mock.configure(token="the-right-token")  # our token is refused: HTTP 401, error code 190
    ids = [i for i in campaign.add(4) if i % 2 == 1]
    producer().loop()
    c = consumer(meta_base_url=mock.url, **META)
    for _ in range(20):
        c.loop()
    assert mock.deliveries() == {}
    assert all(campaign.states()[i] == PENDING for i in ids)
    assert real_redis.hget(f"sender:{c.senders.routes[0].name}:breaker", "state") == "open"


def test_per_row_variables_reach_the_template_from_the_rows_own_columns(campaign, build, mock, real_redis):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40), ADD COLUMN column4 INT")
    ids = campaign.add(4)
    for row_id in ids:
        campaign.query(
            "UPDATE campaign_master_1 SET column2 = %s, column4 = %s WHERE id = %s",
            (f"Ana {row_id}", None if row_id == ids[-1] else row_id * 10, row_id),
        )
    producer, consumer = build
    for k in (0, 1):
        producer(index=k, params=("column2", "column4")).loop()
        row_id = next(i for i in ids if i % 2 == k)
        queued = decode_job(row_id, real_redis.get(f"job:{row_id}"))  # the producer carries them in the job
        assert queued.params["column2"] == f"Ana {row_id}"
        drain_queue(consumer(index=k, meta_base_url=mock.url, params=("column2", "column4"), **META), timeout=30)
    bodies = mock.bodies()
    for row_id in ids:
        parameters = bodies[f"campaign_master_1:{row_id}"]["template"]["components"][0]["parameters"]
        expected = ["" if row_id == ids[-1] else str(row_id * 10)]  # NULL becomes an empty text
        assert [p["text"] for p in parameters] == [f"Ana {row_id}", *expected]


def test_text_placeholders_take_the_rows_columns(campaign, build, mock):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40)")
    ids = [i for i in campaign.add(4) if i % 2 == 1]
    campaign.query("UPDATE campaign_master_1 SET column2 = CONCAT('Budi ', id)")
    producer, consumer = build
    text = "Halo {column2}, promo {{today}}"
    producer(text=text).loop()
    drain_queue(consumer(meta_base_url=mock.url, **{**META, "text": text}), timeout=30)
    bodies = mock.bodies()
    assert {bodies[f"campaign_master_1:{i}"]["text"]["body"] for i in ids} == {
        f"Halo Budi {i}, promo {{today}}" for i in ids
    }


TEXT_GATEWAYS = {
    "waha": dict(provider="waha", waha_api_key="key-1", text="Halo!"),
    "gowa": dict(provider="gowa", gowa_username="admin", gowa_password="pw", text="Halo!"),
}
CREDENTIAL = {"waha": "key-1", "gowa": "admin:pw"}  # what the mock expects in each dialect


@pytest.mark.parametrize("name", sorted(TEXT_GATEWAYS))
def test_text_gateways_send_each_row_once_in_their_own_dialect(campaign, build, mock, name):
    producer, consumer = build
    mock.configure(token=CREDENTIAL[name], fail_first=1, fail_status=500)
    ids = [i for i in campaign.add(6) if i % 2 == 1]
    producer().loop()
    drain_queue(consumer(whatsapp_url=mock.url, max_attempts=5, **TEXT_GATEWAYS[name]), timeout=30)
    assert mock.deliveries() == {f"campaign_master_1:{i}": 1 for i in ids}
    assert all(campaign.states()[i] == SENT for i in ids)
    sent_ids = [m for o, m in campaign.query("SELECT outcome, message_id FROM delivery_attempts") if o == "sent"]
    assert len(sent_ids) == 3 and all(sent_ids)  # each gateway's own message id was read


@pytest.mark.parametrize("name", sorted(TEXT_GATEWAYS))
def test_text_gateways_refusing_credentials_stop_the_sender(campaign, build, mock, name, real_redis):
    producer, consumer = build
    mock.configure(token="something-else")
    ids = [i for i in campaign.add(2) if i % 2 == 1]
    producer().loop()
    c = consumer(whatsapp_url=mock.url, **TEXT_GATEWAYS[name])
    for _ in range(10):
        c.loop()
    assert mock.deliveries() == {} and campaign.states()[ids[0]] == PENDING
    assert real_redis.hget(f"sender:{c.senders.routes[0].name}:breaker", "state") == "open"


def test_a_gowa_reachout_timelock_parks_the_row_instead_of_hammering(campaign, build, mock, real_redis):
    producer, consumer = build
    mock.configure(token="admin:pw", fail_first=1, fail_status=429)  # answered WA_REACHOUT_TIMELOCK
    row = [i for i in campaign.add(2) if i % 2 == 1][0]
    producer().loop()
    c = consumer(whatsapp_url=mock.url, **TEXT_GATEWAYS["gowa"])
    for _ in range(20):
        c.loop()
    assert mock.stats()["requests"] == 1 and campaign.states()[row] == PENDING
    due_in = real_redis.zscore("due:2:1", row) / 1000 - time.time()
    assert due_in > 3000  # about an hour away
