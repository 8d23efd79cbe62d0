"""Reading the endpoint's answers into outcomes."""

import email.utils
import time

import pytest

from common.delivery.providers._text import Content
from common.delivery.providers.webhook import Webhook
from common.delivery.sender import Message, Outcome, classify, parse_retry_after


@pytest.mark.parametrize(
    "status,outcome",
    [
        (200, Outcome.SENT),
        (201, Outcome.SENT),
        (202, Outcome.SENT),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (400, Outcome.FAILED),
        (404, Outcome.FAILED),
        (422, Outcome.FAILED),
        (401, Outcome.SENDER_DOWN),
        (403, Outcome.SENDER_DOWN),
    ],
)
def test_status_codes_map_to_outcomes(status, outcome):
    assert classify(status, {}, "anything").outcome is outcome


def test_any_body_is_fine_on_success():
    assert classify(200, {}, "<html>ok</html>").outcome is Outcome.SENT
    assert classify(200, {}, '{"messages":[{"id":"wamid.1"}]}').message_id == "wamid.1"


def test_retry_after_is_read_from_a_429():
    assert classify(429, {"Retry-After": "7"}, "").retry_after == 7


def test_retry_after_accepts_an_http_date():
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(date) <= 30


@pytest.mark.parametrize("value", [None, "", "soon"])
def test_unreadable_retry_after_is_ignored(value):
    assert parse_retry_after(value) is None


def test_the_body_is_what_the_original_system_sent():
    provider = Webhook("http://h/test_camp", None, Content("promo", None), "id")
    assert provider.body(Message(5, "628100000005", "t:5")) == {
        "messaging_product": "whatsapp",
        "to": "628100000005",
        "type": "template",
        "template": {"name": "promo", "language": {"code": "id"}},
    }
