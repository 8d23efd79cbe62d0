"""Receipts, message states and opt-outs in MySQL.

A batch of receipts is written in one transaction: every event into
delivery_receipts (a gateway's retry of one event is a duplicate key and is
dropped), and each message's furthest status into message_states, raised and
never lowered, so receipts that come twice or out of order count once and in
order. Receipts name a message id, not a row: `match` ties both tables to
rows through delivery_attempts, now or whenever the send's record appears.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from common.delivery.receipts import Receipt
from common.store import schema
from common.store.campaign import HISTORY_TABLE, CampaignTable, storable

RECEIPT_TABLE = "delivery_receipts"
STATE_TABLE = "message_states"
OPT_OUT_TABLE = "opt_outs"
MATCH_WITHIN_HOURS = 72  # a receipt still unmatched after this is not for a message of ours
OPTED_OUT = "opted out"


def stamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None) if seconds is not None else None


class ReceiptStore:
    """Writes what webhooks brought; reads opt-outs for consumers. One
    connection (a CampaignTable's), used by one thread."""

    def __init__(self, table: CampaignTable):
        self.table = table

    def _execute(self, sql: str, args=None, count: bool = False):
        return self.table._execute(sql, args, count=count)

    def create_tables(self, *tables: str) -> None:
        """Databases set up before receipts existed get their tables here (all
        of them, and the index receipts are matched by, when none are named)."""
        for statement in schema.creating(tables or (RECEIPT_TABLE, STATE_TABLE, OPT_OUT_TABLE)):
            self._execute(statement)
        if tables:
            return
        indexed = self._execute(
            "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE()"
            " AND table_name = %s AND column_name = 'message_id' AND seq_in_index = 1",
            (HISTORY_TABLE,),
        )
        if not indexed:
            self._execute(f"ALTER TABLE {HISTORY_TABLE} ADD KEY by_message (message_id)")

    def add(self, gateway: str, receipts: list[Receipt]) -> None:
        """Keep a batch of receipts and raise each message's status."""
        if not receipts:
            return
        events, states = [], []
        for r in receipts:
            code, title = storable(r.error_code, 32) if r.error_code else None, r.error_title
            title = storable(title, 255) if title else None
            at = stamp(r.event_at) or datetime.now(UTC).replace(tzinfo=None)
            events += [gateway, r.message_id, r.status, code, title, stamp(r.event_at)]
            states += [
                r.message_id,
                r.status,
                code,
                title,
                at if r.status in ("delivered", "read") else None,  # read implies delivered
                at if r.status == "read" else None,
                at if r.status == "failed" else None,
            ]
        with self.table.transaction():
            self._execute(
                f"INSERT IGNORE INTO {RECEIPT_TABLE} (gateway, message_id, status, error_code, error_title, event_at)"
                f" VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(receipts))}",
                events,
            )
            self._execute(
                f"INSERT INTO {STATE_TABLE} (message_id, status, error_code, error_title,"
                " delivered_at, read_at, failed_at)"
                f" VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(receipts))}"
                " ON DUPLICATE KEY UPDATE"
                " error_code = IF(VALUES(status) = 'failed', VALUES(error_code), error_code),"
                " error_title = IF(VALUES(status) = 'failed', VALUES(error_title), error_title),"
                # The earliest of the times it was seen delivered.
                " delivered_at = LEAST(COALESCE(delivered_at, VALUES(delivered_at)),"
                " COALESCE(VALUES(delivered_at), delivered_at)),"
                " read_at = COALESCE(read_at, VALUES(read_at)),"
                " failed_at = COALESCE(failed_at, VALUES(failed_at)),"
                " status = GREATEST(status + 0, VALUES(status) + 0)",
                states,
            )

    def match(self) -> int:
        """Tie receipts and states to their rows through the message ids our
        consumers recorded. Returns the messages newly matched."""
        matched = self._execute(
            f"UPDATE {STATE_TABLE} s JOIN {HISTORY_TABLE} a ON a.message_id = s.message_id AND a.outcome = 'sent'"
            " SET s.campaign_table = a.campaign_table, s.row_id = a.row_id"
            " WHERE s.row_id IS NULL AND s.updated_at > NOW() - INTERVAL %s HOUR",
            (MATCH_WITHIN_HOURS,),
            count=True,
        )
        if matched:
            self._execute(
                f"UPDATE {RECEIPT_TABLE} r JOIN {STATE_TABLE} s ON s.message_id = r.message_id"
                " SET r.campaign_table = s.campaign_table, r.row_id = s.row_id"
                " WHERE r.row_id IS NULL AND s.row_id IS NOT NULL AND r.received_at > NOW() - INTERVAL %s HOUR",
                (MATCH_WITHIN_HOURS,),
            )
        return matched

    # Opt-outs

    def opt_out(self, phones: Iterable[str], reason: str, source: str) -> int:
        """Add phones (E.164 digits) to the list; a phone already there keeps its first reason."""
        phones = sorted(set(phones))
        if not phones:
            return 0
        return self._execute(
            f"INSERT IGNORE INTO {OPT_OUT_TABLE} (phone, reason, source)"
            f" VALUES {', '.join(['(%s, %s, %s)'] * len(phones))}",
            [value for phone in phones for value in (phone, storable(reason, 255), source)],
            count=True,
        )

    def opt_in(self, phones: Iterable[str]) -> int:
        phones = sorted(set(phones))
        if not phones:
            return 0
        return self._execute(
            f"DELETE FROM {OPT_OUT_TABLE} WHERE phone IN ({', '.join(['%s'] * len(phones))})", phones, count=True
        )

    def opted_out_among(self, phones: Iterable[str]) -> set[str]:
        """Which of these phones asked not to be messaged: one query per claimed batch."""
        phones = sorted(set(phones))
        if not phones:
            return set()
        rows = self._execute(
            f"SELECT phone FROM {OPT_OUT_TABLE} WHERE phone IN ({', '.join(['%s'] * len(phones))})", phones
        )
        return {phone for (phone,) in rows}

    def opt_outs(self, limit: int = 1000) -> list[dict]:
        rows = self._execute(
            f"SELECT phone, reason, source, created_at FROM {OPT_OUT_TABLE} ORDER BY created_at DESC, phone LIMIT %s",
            (limit,),
        )
        return [
            {"phone": phone, "reason": reason, "source": source, "created_at": created.isoformat()}
            for phone, reason, source, created in rows
        ]
