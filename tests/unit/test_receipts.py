"""Reading replies for opt-outs, gateway time stamps and inbox entries."""

import pytest

from common.delivery.receipts import Events, OptOutRules, Receipt, Reply, timestamp, timestamp_of_iso
from common.process.receipt_writer import ReceiptWriter
from common.queue.inbox import Inbox, decode, entry_of
from common.store.campaign import RowRejected


@pytest.mark.parametrize(
    "text,button,decision",
    [
        ("STOP", None, "out"),
        ("  stop ", None, "out"),
        ("Berhenti", None, "out"),
        ("un subscribe", None, None),  # spacing inside a word is another word
        ("please stop the spam", None, None),  # a message for a person, not an opt-out
        ("Stop promotions", "Stop promotions", "out"),  # the marketing templates' quick reply
        ("Stop promotions", None, None),  # typed, not pressed: only the keywords count
        ("start", None, "in"),
        ("", None, None),
    ],
)
def test_only_a_reply_that_is_a_keyword_changes_the_list(text, button, decision):
    assert OptOutRules().decide(Reply("6281234567890", text, button=button)) == decision


def test_keywords_come_from_comma_separated_lists():
    rules = OptOutRules.parse("stop, Keluar ,", "mulai")
    assert rules.stop == {"STOP", "KELUAR"} and rules.start == {"MULAI"}
    assert rules.decide(Reply("6281234567890", "keluar")) == "out"
    assert OptOutRules.parse(None, None) == OptOutRules()


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("1750857384", 1750857384.0),
        (1750857500482, 1750857500.482),  # WAHA's envelope: milliseconds
        ("nope", None),
        (True, None),
        (-5, None),
        (1e300, None),
        (4102444800, None),  # 2100: no TIMESTAMP column holds it
    ],
)
def test_gateway_time_stamps_become_unix_seconds_a_timestamp_column_holds(value, seconds):
    assert timestamp(value) == seconds


def test_gowa_time_stamps_are_rfc_3339():
    assert timestamp_of_iso("2025-06-25T13:17:32Z") == 1750857452.0
    assert timestamp_of_iso("9999-12-31T23:59:59Z") is None
    assert timestamp_of_iso("yesterday") is None


@pytest.mark.parametrize("raw", ["", "[]", "{}", '{"gateway": "meta", "receipts": [{"nope": 1}]}', "[" * 5000])
def test_an_inbox_entry_this_version_cannot_read_is_none(raw):
    assert decode(raw) is None


class RefusingStore:
    """Refuses any batch holding the receipt `refused`, as MySQL refuses a bad value."""

    def __init__(self, refused: str):
        self.refused = refused
        self.kept: list[str] = []
        self.opted_out: list[str] = []

    def add(self, gateway, receipts):
        if any(r.message_id == self.refused for r in receipts):
            raise RowRejected("MySQL refused the row: Incorrect datetime value")
        self.kept += [r.message_id for r in receipts]

    def opt_out(self, phones, reason, source):
        self.opted_out += phones
        return len(phones)

    def opt_in(self, phones):
        return 0

    def match(self, within_minutes=None):
        return 0


def test_a_receipt_mysql_refuses_is_dropped_alone_and_the_inbox_moves_on(fake_redis):
    inbox = Inbox(fake_redis, "")
    inbox.keep([entry_of("meta", Events([Receipt("wamid.1", "delivered"), Receipt("wamid.bad", "read")], []))])
    inbox.keep([entry_of("meta", Events([Receipt("wamid.2", "read")], [Reply("6281234567890", "STOP")]))])
    fake_redis.rpush(inbox.key, "not an entry")
    store = RefusingStore("wamid.bad")
    writer = ReceiptWriter(inbox, store, OptOutRules())
    assert writer.write_batch() == 3
    assert store.kept == ["wamid.1", "wamid.2"] and store.opted_out == ["6281234567890"]
    assert inbox.depth() == 0
