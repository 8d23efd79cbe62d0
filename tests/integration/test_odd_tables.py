"""Campaign tables as users have them: any column type, ids past INT, history
tables made by older versions. Every row is sent or fails with a reason."""

import logging

import pytest

from common.store.campaign import FAILED, PENDING, SENT, Failure
from tests.conftest import drain

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "column_type,phone",
    [
        ("BIGINT", 6281234567801),
        ("BIGINT UNSIGNED", 6281234567801),
        ("DECIMAL(20,0)", 6281234567801),
        ("VARBINARY(40)", b"+62 812-3456-7801"),
        ("CHAR(30)", "  6281234567801  "),
        ("TEXT", "6281234567801"),
    ],
)
def test_a_phone_column_of_any_type_is_sent(campaign, build, mock, column_type, phone):
    producer, consumer = build
    campaign.query(f"ALTER TABLE campaign_master_1 MODIFY column1 {column_type}")
    campaign.query("INSERT INTO campaign_master_1 (id, column1) VALUES (1, %s)", (phone,))
    producer().loop()
    drain(consumer())
    assert campaign.states() == {1: SENT}
    assert mock.recipients() == {"6281234567801": 1}


@pytest.mark.parametrize(
    "column_type,value,reason",
    [
        ("DATE", "2026-12-07", "phone is not a valid number"),
        ("VARBINARY(40)", b"\xff\xfe\x00\x01", "characters other than digits"),
        ("BIGINT", None, "phone is empty"),
        ("DOUBLE", 1.5, "phone is not a number"),
    ],
)
def test_a_phone_no_message_can_go_to_fails_its_row_with_a_reason(campaign, build, mock, column_type, value, reason):
    producer, consumer = build
    campaign.query(f"ALTER TABLE campaign_master_1 MODIFY column1 {column_type}")
    campaign.query("INSERT INTO campaign_master_1 (id, column1) VALUES (1, %s)", (value,))
    producer().loop()
    drain(consumer())
    assert campaign.states() == {1: FAILED}
    assert reason in campaign.failure_reasons()[1]
    assert mock.stats()["requests"] == 0


def test_message_variables_of_any_type_fill_the_text(campaign, build, mock):
    producer, consumer = build
    campaign.query(
        "ALTER TABLE campaign_master_1 ADD COLUMN amount DECIMAL(12,2), ADD COLUMN code VARBINARY(8),"
        " ADD COLUMN due DATE"
    )
    campaign.query(
        "INSERT INTO campaign_master_1 (id, column1, amount, code, due)"
        " VALUES (1, '6281234567801', 1500.50, 'AB12', '2026-12-24')"
    )
    options = dict(provider="waha", whatsapp_url=f"{mock.url}", text="Pay {amount} with {code} by {due}")
    producer(**options).loop()
    drain(consumer(**options))
    (body,) = mock.bodies().values()
    assert body["text"] == "Pay 1500.50 with AB12 by 2026-12-24"


BIG = 2**32 + 1  # past INT and INT UNSIGNED


def test_row_ids_past_int_are_sent_failed_and_recorded(campaign, build, mock):
    producer, consumer = build
    campaign.query("ALTER TABLE campaign_master_1 MODIFY id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT")
    campaign.query(
        "INSERT INTO campaign_master_1 (id, column1) VALUES (%s, '6281234567801'), (%s, 'nope'), (%s, '6281234567805')",
        (BIG, BIG + 2, 2**64 - 1),
    )
    producer().loop()
    drain(consumer())
    assert campaign.states() == {BIG: SENT, BIG + 2: FAILED, 2**64 - 1: SENT}
    assert set(campaign.failure_reasons()) == {BIG + 2}
    assert set(campaign.query("SELECT row_id, outcome FROM delivery_attempts")) == {
        (BIG, "sent"),
        (BIG + 2, "failed"),
        (2**64 - 1, "sent"),
    }


def test_history_lines_mysql_refuses_are_dropped_and_their_rows_still_recorded(campaign, build, mock, caplog):
    producer, consumer = build
    campaign.query("ALTER TABLE delivery_attempts MODIFY latency_ms TINYINT NULL")  # 127 ms at most
    campaign.add(4)
    mock.configure(latency_ms=200)
    producer().loop()
    with caplog.at_level(logging.WARNING, logger="common.process.consumer"):
        drain(consumer())
    assert [campaign.states()[i] for i in (1, 3)] == [SENT, SENT]
    assert campaign.query("SELECT COUNT(*) FROM delivery_attempts") == ((0,),)
    assert "history lines MySQL refused" in caplog.text
    assert mock.deliveries() == {"campaign_master_1:1": 1, "campaign_master_1:3": 1}


def test_history_tables_made_with_int_row_ids_are_widened_at_start(campaign, build, mock):
    producer, consumer = build
    campaign.query("ALTER TABLE delivery_attempts MODIFY row_id INT NOT NULL")
    campaign.query("ALTER TABLE campaign_failures MODIFY row_id INT NOT NULL")
    campaign.query("ALTER TABLE campaign_master_1 MODIFY id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT")
    campaign.query(
        "INSERT INTO campaign_master_1 (id, column1) VALUES (%s, '6281234567801'), (%s, 'nope')", (BIG, BIG + 2)
    )
    c = consumer()
    c.initialize()
    producer().loop()
    drain(c)
    types = dict(
        campaign.query(
            "SELECT TABLE_NAME, COLUMN_TYPE FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'row_id'"
        )
    )
    assert all("bigint" in kind and "unsigned" in kind for kind in types.values()), types
    assert campaign.states() == {BIG: SENT, BIG + 2: FAILED}
    assert campaign.count(PENDING) == 0


def test_a_failure_reason_with_a_lone_surrogate_is_stored(campaign, table_for, settings_for):
    campaign.add(2)
    table = table_for(settings_for())
    table.record([], [Failure(1, 1, "HTTP 400: bad \ud800 text " + "x" * 400, 400)], [])
    reason = campaign.failure_reasons()[1]
    assert reason.startswith("HTTP 400: bad ? text") and len(reason) == 255


def test_a_large_claim_reads_its_own_rows_not_every_pending_row(campaign, table_for, settings_for):
    """Past 200 ids in an IN list the optimizer used to guess from statistics
    and walk every pending row of a freshly loaded table: each claim and each
    record cost O(pending) (101,100 index entries here, before the fix)."""
    with campaign.connection.cursor() as cursor:
        for _ in range(20):
            cursor.execute("INSERT INTO campaign_master_1 (column1) VALUES " + ", ".join(["('6281234567890')"] * 5000))
    ids = [row_id for (row_id,) in campaign.query("SELECT id FROM campaign_master_1 ORDER BY id LIMIT 50000, 500")]
    table = table_for(settings_for())

    def entries_read() -> int:
        # Index entries the engine looked at, those a pushed-down condition turned away included.
        status = dict(table._execute("SHOW SESSION STATUS LIKE 'Handler_%%'"))
        return int(status["Handler_read_next"]) + int(status.get("Handler_icp_attempts", 0))

    before = entries_read()
    assert len(table.pending_among(ids)) == 500
    table.record(ids[:300], [], [])
    read = entries_read() - before
    assert read < 5_000, f"{read} index entries read for 500 + 300 rows out of 100,000 pending"


def test_a_producer_page_reads_from_where_its_walk_stopped(campaign, table_for, settings_for):
    """MariaDB read (status, id) by status alone, from the first pending row:
    a page after 50,000 queued (still pending) rows stepped over all of them
    (about 80 index entries per row queued in the benchmark)."""
    with campaign.connection.cursor() as cursor:
        for _ in range(20):
            cursor.execute("INSERT INTO campaign_master_1 (column1) VALUES " + ", ".join(["('6281234567890')"] * 5000))
    table = table_for(settings_for())
    table.walk_hint()  # its one lookup is not part of the page

    def entries_read() -> int:
        status = dict(table._execute("SHOW SESSION STATUS LIKE 'Handler_%%'"))
        return int(status["Handler_read_next"]) + int(status.get("Handler_icp_attempts", 0))

    before = entries_read()
    page = next(table.pending_rows(index=1, of=2, page_size=500, after=50_000))
    read = entries_read() - before
    assert [row.id for row in page] == list(range(50_001, 51_001, 2))
    assert read < 5_000, f"{read} index entries read for a page of 500 rows"


def test_a_table_without_a_status_index_is_walked_all_the_same(campaign, table_for, settings_for):
    campaign.query("ALTER TABLE campaign_master_1 DROP INDEX pending_rows")
    campaign.add(5)
    table = table_for(settings_for())
    assert table.walk_hint() == ""
    assert [row.id for row in next(table.pending_rows(index=1, of=2, page_size=2, after=1))] == [3, 5]
