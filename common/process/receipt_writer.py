"""The receipt writer: webhook events from the Redis inbox into MySQL.

Runs beside the web service, on a thread of its own. Each batch goes to
MySQL in one transaction (receipts and message states), then opt-outs and
opt-ins from replies, then the batch is trimmed off the inbox. Every step
may be repeated after a crash or an outage without counting anything twice.
"""

import logging
import threading
import time
from collections import defaultdict

from common import metrics
from common.delivery.receipts import Events, OptOutRules, Receipt
from common.errors import CampaignError, ServiceUnavailable
from common.queue.inbox import Inbox
from common.store.campaign import RowRejected
from common.store.receipts import ReceiptStore

log = logging.getLogger(__name__)

BATCH = 500  # inbox entries (requests) per MySQL transaction
IDLE_WAIT = 0.05  # seconds between looks at an empty inbox
OUTAGE_WAIT = 2.0  # seconds between tries while MySQL or Redis is away
# Looks for sends recorded after their receipts came: often over the states
# that changed lately, now and then over all that may still be ours. Receipts
# for messages sent by other systems never match, so a frequent look over all
# of them would cost a join per such message every few seconds.
MATCH_EVERY = 2.0  # seconds
RECENT_MINUTES = 15
MATCH_ALL_EVERY = 600.0  # seconds


class ReceiptWriter:
    def __init__(self, inbox: Inbox, store: ReceiptStore, rules: OptOutRules):
        self.inbox = inbox
        self.store = store
        self.rules = rules
        self.stopped = threading.Event()
        self.away: str | None = None  # the outage being waited out, logged once
        self.next_match = 0.0
        self.next_full_match = 0.0
        self.thread = threading.Thread(target=self.run, name="receipt-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.inbox.release()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                wrote = self.write_batch()
                self.match_due()
            except (ServiceUnavailable, CampaignError) as exc:
                if str(exc) != self.away:
                    log.warning("webhook events wait in Redis: %s", exc)
                    self.away = str(exc)
                self.stopped.wait(OUTAGE_WAIT)
                continue
            except Exception:
                log.exception("writing webhook events failed; they stay in the inbox")
                self.stopped.wait(OUTAGE_WAIT)
                continue
            if self.away:
                log.info("writing webhook events again")
                self.away = None
            if not wrote:
                self.stopped.wait(IDLE_WAIT)

    def match_due(self) -> None:
        """Receipts can come before the consumer has recorded the send they
        are about: tie them to their rows once it has, even if no more come."""
        now = time.monotonic()
        if now >= self.next_full_match:
            self.next_full_match, self.next_match = now + MATCH_ALL_EVERY, now + MATCH_EVERY
            self.store.match()
        elif now >= self.next_match:
            self.next_match = now + MATCH_EVERY
            self.store.match(RECENT_MINUTES)

    def write_batch(self) -> int:
        """Store one batch; returns how many inbox entries it took (0: none waiting)."""
        if not self.inbox.depth():
            return 0
        taken = self.inbox.take(BATCH)
        if taken is None:
            return 0  # another web service is writing
        count, entries = taken
        if len(entries) < count:
            log.warning("dropped %d webhook inbox entries this version cannot read", count - len(entries))
        receipts: dict[str, list[Receipt]] = defaultdict(list)
        for gateway, events in entries:
            receipts[gateway] += events.receipts
        for gateway, batch in receipts.items():
            for receipt in self.stored(gateway, batch):
                metrics.RECEIPTS.labels(gateway, receipt.status).inc()
        self.apply_replies(entries)
        self.store.match(RECENT_MINUTES)  # this batch's states changed just now
        self.inbox.done(count)
        return count

    def stored(self, gateway: str, batch: list[Receipt]) -> list[Receipt]:
        """Store a batch; if MySQL refuses a value in it, store the receipts one
        by one and drop (with a line) only those it refuses, so one odd
        receipt never holds up the inbox behind it."""
        try:
            self.store.add(gateway, batch)
            return batch
        except RowRejected:
            pass
        kept = []
        for receipt in batch:
            try:
                self.store.add(gateway, [receipt])
                kept.append(receipt)
            except RowRejected as exc:
                log.warning("dropped a %s receipt MySQL refused (%s): %s", gateway, receipt.message_id[:40], exc)
        return kept

    def apply_replies(self, entries: list[tuple[str, Events]]) -> None:
        """STOP replies add their phones to the opt-out list, START ones take them off, in the order they came."""
        for gateway, events in entries:
            for reply in events.replies:
                change = self.rules.decide(reply)
                if change == "out" and self.store.opt_out(
                    [reply.phone], f"replied {reply.text or reply.button}", gateway
                ):
                    metrics.OPT_OUTS.labels("out").inc()
                    log.info("a recipient opted out by replying (%s)", gateway)
                elif change == "in" and self.store.opt_in([reply.phone]):
                    metrics.OPT_OUTS.labels("in").inc()
                    log.info("a recipient opted back in by replying (%s)", gateway)
