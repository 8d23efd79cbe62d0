"""Receipts, message states and opt-outs in MySQL.

A batch of receipts is written in one transaction: every event into
delivery_receipts (a gateway's retry of one event is a duplicate key and is
dropped), and each message's furthest status into message_states, raised and
never lowered, so receipts that come twice or out of order count once and in
order. Receipts name a message id, not a row: `match` ties both tables to
rows through delivery_attempts, now or whenever the send's record appears.
"""

import math
import time
from collections.abc import Iterable
from decimal import Decimal

from common.delivery.receipts import Receipt
from common.store import schema
from common.store.campaign import FAILURE_TABLE, HISTORY_TABLE, PENDING, SENT, CampaignTable, storable

RECEIPT_TABLE = "delivery_receipts"
STATE_TABLE = "message_states"
OPT_OUT_TABLE = "opt_outs"
MATCH_WITHIN_HOURS = 72  # a receipt still unmatched after this is not for a message of ours
TIE_BATCH = 500  # receipts or states tied to their rows per UPDATE
OPTED_OUT = "opted out"
FUNNEL_KEYS = ("delivered", "read", "failed_after_acceptance", "opted_out")
LATENCY_SAMPLE = 10_000  # delivered messages the send-to-delivered percentiles are taken over


# Times go in as unix seconds through FROM_UNIXTIME, so MySQL stores them right
# whatever the session's time zone (a naive datetime would be read in it).
STATE_VALUES = "(%s, %s, %s, %s, FROM_UNIXTIME(%s), FROM_UNIXTIME(%s), FROM_UNIXTIME(%s))"


def millis(seconds: float) -> Decimal:
    """Unix seconds as an exact decimal to the millisecond the columns keep: the
    driver sends a float as a DOUBLE, and 5.0 s read back as 4.999."""
    return Decimal(f"{seconds:.3f}")


class ReceiptStore:
    """Writes what webhooks brought; reads opt-outs for consumers. One
    connection (a CampaignTable's), used by one thread."""

    def __init__(self, table: CampaignTable):
        self.table = table

    def _execute(self, sql: str, args=None, count: bool = False):
        return self.table._execute(sql, args, count=count)

    def create_tables(self, *tables: str) -> None:
        """Databases set up before receipts existed get their tables here (all
        of them, and the indexes receipts are matched by, when none are named)."""
        for statement in schema.creating(tables or (RECEIPT_TABLE, STATE_TABLE, OPT_OUT_TABLE)):
            self._execute(statement)
        if tables:
            return
        for table, name, first_column, columns in (
            (HISTORY_TABLE, "by_message", "message_id", "message_id"),
            (RECEIPT_TABLE, "unmatched", "row_id", "row_id, received_at"),
        ):
            indexed = self._execute(
                "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE()"
                " AND table_name = %s AND column_name = %s AND seq_in_index = 1",
                (table, first_column),
            )
            if not indexed:
                self._execute(f"ALTER TABLE {table} ADD KEY {name} ({columns})")

    def add(self, gateway: str, receipts: list[Receipt]) -> None:
        """Keep a batch of receipts and raise each message's status."""
        if not receipts:
            return
        events, states = [], []
        for r in receipts:
            code, title = storable(r.error_code, 32) if r.error_code else None, r.error_title
            title = storable(title, 255) if title else None
            event_at = millis(r.event_at) if r.event_at is not None else None
            at = event_at or millis(time.time())
            events += [gateway, r.message_id, r.status, code, title, event_at]
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
                f" VALUES {', '.join(['(%s, %s, %s, %s, %s, FROM_UNIXTIME(%s))'] * len(receipts))}",
                events,
            )
            self._execute(
                f"INSERT INTO {STATE_TABLE} (message_id, status, error_code, error_title,"
                " delivered_at, read_at, failed_at)"
                f" VALUES {', '.join([STATE_VALUES] * len(receipts))}"
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

    def match(self, within_minutes: int = MATCH_WITHIN_HOURS * 60) -> int:
        """Tie receipts and states to their rows through the message ids our
        consumers recorded, for those that came or changed in the last
        `within_minutes`. Returns the messages newly matched.

        The pairs are found by plain reads, which lock nothing: a locking
        join would hold gaps of the send history's message-id index that a
        consumer's record transaction inserts into, and InnoDB would end one
        of them as a deadlock. They are tied by key in one transaction, so no
        reader sees a state tied to its row and its receipts not yet;
        receipts first, the order `add` locks them in. Receipts join the
        history themselves: a late one (read, after its message was matched)
        is tied too."""
        receipts = self._execute(
            f"SELECT r.id, a.campaign_table, a.row_id FROM {RECEIPT_TABLE} r"
            f" JOIN {HISTORY_TABLE} a ON a.message_id = r.message_id AND a.outcome = 'sent'"
            " WHERE r.row_id IS NULL AND r.received_at > NOW() - INTERVAL %s MINUTE",
            (within_minutes,),
        )
        states = self._execute(
            f"SELECT s.message_id, a.campaign_table, a.row_id FROM {STATE_TABLE} s"
            f" JOIN {HISTORY_TABLE} a ON a.message_id = s.message_id AND a.outcome = 'sent'"
            " WHERE s.row_id IS NULL AND s.updated_at > NOW() - INTERVAL %s MINUTE",
            (within_minutes,),
        )
        if not (receipts or states):
            return 0
        with self.table.transaction():
            self._tie(RECEIPT_TABLE, "id", receipts)
            return self._tie(STATE_TABLE, "message_id", states)

    def _tie(self, table: str, key: str, found) -> int:
        """Set the campaign table and row of each (key, table, row id) found,
        where none is set yet; returns how many rows changed."""
        changed = 0
        for first in range(0, len(found), TIE_BATCH):
            batch = found[first : first + TIE_BATCH]
            cases = " ".join(["WHEN %s THEN %s"] * len(batch))
            args = [value for k, t, _ in batch for value in (k, t)]
            args += [value for k, _, row_id in batch for value in (k, row_id)]
            args += [k for k, _, _ in batch]
            changed += self._execute(
                f"UPDATE {table} SET campaign_table = CASE {key} {cases} END, row_id = CASE {key} {cases} END"
                f" WHERE {key} IN ({', '.join(['%s'] * len(batch))}) AND row_id IS NULL",
                args,
                count=True,
            )
        return changed

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

    # The operator's view: the status funnel, re-sending what failed after acceptance

    def funnel_counts(self, of: int) -> dict[int, dict[str, int]]:
        """{partition index: {delivered, read, failed_after_acceptance, opted_out}}
        for this campaign table. Messages count by their furthest status, so
        `delivered` includes those read since. One pass over message_states
        (about 1 s per million states) and one over the campaign's part of
        the failure table's primary key."""
        counts = {index: dict.fromkeys(FUNNEL_KEYS, 0) for index in range(of)}
        for index, status, rows in self._execute(
            # From row_state (campaign table, row id, status) alone: this campaign's
            # part, no row lookups (a scan of every campaign's states took 1 s per million).
            f"SELECT row_id %% %s, status, COUNT(*) FROM {STATE_TABLE} FORCE INDEX (row_state)"
            " WHERE campaign_table = %s AND row_id IS NOT NULL GROUP BY 1, 2",
            (of, self.table.table),
        ):
            view = counts[int(index)]
            if status in ("delivered", "read"):
                view["delivered"] += int(rows)
            if status == "read":
                view["read"] += int(rows)
            if status == "failed":
                view["failed_after_acceptance"] += int(rows)
        for index, rows in self._execute(
            f"SELECT row_id %% %s, COUNT(*) FROM {FAILURE_TABLE} WHERE campaign_table = %s AND reason = %s GROUP BY 1",
            (of, self.table.table, OPTED_OUT),
        ):
            counts[int(index)]["opted_out"] = int(rows)
        return counts

    def delivery_seconds(self, of: int, limit: int = LATENCY_SAMPLE) -> dict[int, list[float]]:
        """{partition index: seconds from send to delivered}, for the `limit`
        delivered messages of this campaign with the highest row ids (rows
        are sent in id order, so these are about the latest: read backwards
        along the row_state index, never sorting the campaign's states),
        each with its send's attempt found by message id (by_message). Sorted
        ascending. A receipt stamped before our own record of the send (the
        gateway's clock, whole seconds) counts as 0."""
        samples: dict[int, list[float]] = {index: [] for index in range(of)}
        for index, micros in self._execute(
            f"SELECT s.row_id %% %s, TIMESTAMPDIFF(MICROSECOND, a.created_at, s.delivered_at)"
            f" FROM (SELECT message_id, row_id, delivered_at FROM {STATE_TABLE}"
            " WHERE campaign_table = %s AND row_id IS NOT NULL AND delivered_at IS NOT NULL"
            " ORDER BY row_id DESC LIMIT %s) s"
            f" JOIN {HISTORY_TABLE} a ON a.message_id = s.message_id AND a.outcome = 'sent' AND a.campaign_table = %s",
            (of, self.table.table, limit, self.table.table),
        ):
            samples[int(index)].append(max(int(micros), 0) / 1e6)
        for values in samples.values():
            values.sort()
        return samples

    def resend_undelivered(self, partition: tuple[int, int] | None = None) -> int:
        """Set back to pending the sent rows whose latest message failed after
        the gateway accepted it (a 'failed' receipt), in partition (index,
        of) when given; returns how many. Nothing else is cleared: the failed
        message keeps its receipts. The row's send generation was raised when
        it was recorded sent, so it goes out with a new idempotency key; a row
        already sent again (its latest send is another message) is left alone."""
        table, status = self.table.table, self.table.status
        where, args = [f"c.{status} = %s", "s.status = 'failed'"], [table, table, SENT]
        if partition:
            where.append("c.id %% %s = %s")
            args += [partition[1], partition[0]]
        return self._execute(
            f"UPDATE {table} c JOIN {STATE_TABLE} s ON s.campaign_table = %s AND s.row_id = c.id"
            f" SET c.{status} = {PENDING}"
            f" WHERE s.message_id = (SELECT a.message_id FROM {HISTORY_TABLE} a WHERE a.campaign_table = %s"
            " AND a.row_id = c.id AND a.outcome = 'sent' ORDER BY a.id DESC LIMIT 1)"
            f" AND {' AND '.join(where)}",
            args,
            count=True,
        )

    def opt_out_count(self) -> int:
        return int(self._execute(f"SELECT COUNT(*) FROM {OPT_OUT_TABLE}")[0][0])


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]
