"""Providers over loopback against the real mock, which answers like the
WhatsApp Cloud API: the meta dialect end to end, on the real MariaDB and Redis."""

import pytest

from common.db import PENDING, SENT
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


def test_meta_token_error_190_stops_the_sender_and_keeps_rows_pending(campaign, build, mock):
    producer, consumer = build
    mock.configure(token="the-right-token")  # our token is refused: HTTP 401, error code 190
    ids = [i for i in campaign.add(4) if i % 2 == 1]
    producer().loop()
    c = consumer(meta_base_url=mock.url, **META)
    for _ in range(20):
        c.loop()
    assert mock.deliveries() == {}
    assert all(campaign.states()[i] == PENDING for i in ids)
    assert c.paused_until > 0
