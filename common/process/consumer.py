"""The consumer: claimed job → send → record, for one partition.

Sends run as coroutines on one asyncio loop (common.delivery.workers) and stream:
a new send starts as soon as one ends, never waiting for the slowest of a
batch. Bookkeeping is batched: one MySQL update and one Redis round trip for
all the sends that ended in the last RECORD_EVERY seconds.

Order of the bookkeeping after a 2xx: MySQL first (the row is no longer
pending), then Redis (the job key is deleted). The other order would let a
producer re-queue a row that is already sent. When MySQL cannot be reached,
the 2xx is written into the job in Redis instead, so whoever claims the job
next records it without sending again.
"""

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence

from common import metrics
from common.delivery.routing import SenderPool, Wait
from common.delivery.sender import MAX_RETRY_AFTER, Message, Outcome, Sender, SendResult
from common.delivery.workers import Sends
from common.errors import ServiceUnavailable
from common.phones import InvalidPhone, mask_phone, normalise_phone
from common.queue.jobs import Claim, Job, JobQueue, now_ms
from common.queue.leases import LeaseKeeper
from common.queue.pause import PauseSwitch
from common.settings import Settings
from common.store.campaign import Attempt, CampaignTable, Failure, Row, RowRejected, idempotency_key
from common.store.receipts import OPT_OUT_TABLE, OPTED_OUT, ReceiptStore

log = logging.getLogger(__name__)

REPORT_EVERY = 10.0  # seconds between summary lines
RECORD_EVERY = 0.1  # seconds between bookkeeping writes while sends stream
MAX_RETRY_DELAY = 600.0
ACCEPTED_EARLIER = "accepted earlier; recorded without sending again"
EXPIRED = "expired"  # unsent at the end of its validity (VALID_FOR): not sent late


def accepted(job: Job, result: SendResult) -> Job:
    """The job of a send the endpoint accepted, with what its history line
    needs, for JobQueue.remember_sent to keep in Redis while MySQL is away."""
    return dataclasses.replace(job, message_id=result.message_id, sender=result.sender)


def with_row_params(job: Job, row: Row) -> Job:
    """A job queued by a producer configured with fewer message variables
    gets the missing ones from the row this consumer just read."""
    if row.params.keys() <= job.params.keys():
        return job
    return dataclasses.replace(job, params={**row.params, **job.params})


def retry_delay(attempt: int, base: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter; a Retry-After from the endpoint is a
    floor. Always finite and at most a day, whatever the attempt count."""
    delay = min(base * 2 ** min(max(attempt - 1, 0), 32), MAX_RETRY_DELAY) * random.uniform(0.5, 1.5)
    return min(max(delay, retry_after or 0.0), MAX_RETRY_AFTER)


@dataclasses.dataclass
class Outcomes:
    """Ended sends sorted by what the bookkeeping must do with them."""

    sent: list[Job] = dataclasses.field(default_factory=list)
    failed: list[Failure] = dataclasses.field(default_factory=list)
    # (row id, ms until it is due, new payload or None to keep it)
    moves: list[tuple[int, int, Job | None]] = dataclasses.field(default_factory=list)
    history: list[Attempt] = dataclasses.field(default_factory=list)
    # Counted once the outcomes are written (a failed write sorts them again).
    sends: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)  # (sender, outcome) -> sends
    latencies: list[float] = dataclasses.field(default_factory=list)  # seconds
    waits: Counter[str] = dataclasses.field(default_factory=Counter)  # reason -> rows handed back


class Consumer:
    def __init__(
        self,
        settings: Settings,
        table: CampaignTable,
        queue: JobQueue,
        senders: Sequence[Sender],
        opt_outs: ReceiptStore | None = None,
    ):
        self.settings = settings
        self.table = table
        self.queue = queue
        self.senders = SenderPool.build(senders, queue.redis, settings)
        self.opt_outs = opt_outs or ReceiptStore(table)  # the opt-out list, on the table's connection
        self.window = settings.send_window()
        self.pause = PauseSwitch(queue.redis, settings.key_prefix, settings.partition)
        self.partition_label = str(settings.partition)
        self.window_was_open = True
        self.holding = False  # paused or outside the send window: no claims, and claimed jobs go back
        # Claim at most two rounds of sends ahead, so a claimed job waits for
        # a free thread about one request time.
        self.capacity = settings.concurrency * 2
        self.workers = Sends(settings.concurrency, self.send, self.send_crashed)
        self.leases = LeaseKeeper(queue, settings.lease_seconds)
        self.in_flight: dict[int, Job] = {}  # row id -> job, from claim until its send ends
        self.ended: list[tuple[Job, SendResult | None]] = []
        # How many of `ended` are written to MySQL already, their Redis steps
        # having failed: a retry writes only the rest (history lines once).
        self.in_mysql = 0
        self.last_record = time.monotonic()
        self.stuck = False  # the last bookkeeping write failed (MySQL or Redis down)
        self.remembered: set[int] = set()  # rows whose 2xx is already written into Redis
        self.mysql_away = False  # while True, each 2xx goes into Redis as soon as it arrives
        self.stopping = False
        self.shut = False
        self.tally: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()  # reason -> rows handed back to wait for a sender
        # reason -> its log level, set where the wait is decided: a stopped
        # sender holding sticky rows needs someone to look (WARNING), a full one only time.
        self.wait_levels: dict[str, int] = {}
        self.send_seconds = metrics.SEND_SECONDS.labels(settings.provider)
        self.last_report = time.monotonic()

    def initialize(self) -> None:
        self.table.check(need_failure_table=True)
        self.opt_outs.create_tables(OPT_OUT_TABLE)
        self.queue.depth()
        self.senders.probe()
        self.leases.start()

    def loop(self) -> bool:
        """One cycle: record what ended, claim and start sends, wait briefly for
        sends to end. Returns True while there is work, so the driver calls
        again at once instead of sleeping."""
        self.collect(timeout=0)
        if self.record_due():
            self.record()
        busy = bool(self.in_flight)
        # Read every cycle, even when no claim is possible: sends already
        # claimed must not start while paused or outside the window either.
        self.holding = self.pause.is_paused() or not self.in_window()
        if self.may_claim():
            busy = self.claim_and_start() > 0 or busy
        self.collect(timeout=0.05 if self.in_flight else 0)
        if self.record_due():
            self.record()
        self.report()
        return busy

    def record_due(self) -> bool:
        """Record in batches while sends stream; at once when nothing else is
        in flight, when stopping, or to retry a failed write."""
        return bool(self.ended) and (
            self.stuck or self.stopping or not self.in_flight or time.monotonic() - self.last_record >= RECORD_EVERY
        )

    def may_claim(self) -> bool:
        free = self.capacity - len(self.in_flight)
        return (
            not self.stopping
            and not self.stuck  # bookkeeping cannot be written (MySQL or Redis down): send nothing new
            and free >= max(1, self.settings.concurrency // 2)
            and self.senders.ready()  # some sender's breaker lets sends through
            and not self.holding  # paused, or outside the send window
        )

    def in_window(self) -> bool:
        """Outside the send window nothing is claimed; rows wait in the queue."""
        is_open = self.window is None or self.window.is_open()
        if is_open != self.window_was_open:
            if is_open:
                log.info("the send window %s is open: sending", self.window)
            elif self.window:
                log.info("outside the send window %s: no sends for %.0f min", self.window, self.window.opens_in() / 60)
            self.window_was_open = is_open
        return is_open

    def claim_and_start(self) -> int:
        """Claim due jobs, drop stale ones, start the rest. Returns how many were claimed."""
        free = self.capacity - len(self.in_flight)
        claims, foreign, reclaimed, lease = self.queue.claim(
            min(free, self.settings.batch_size), self.settings.lease_seconds
        )
        if foreign:
            log.warning("removed %d queue entries that are not row ids: %s", len(foreign), foreign[:5])
        if reclaimed:
            metrics.LEASES_RECLAIMED.labels(self.partition_label).inc(reclaimed)
            log.info("took over %d jobs whose lease had lapsed (a consumer died or stalled)", reclaimed)
        if not claims:
            return 0
        try:
            pending = self.table.pending_among([c.row_id for c in claims])
        except ServiceUnavailable:
            self.mysql_lost()
            self.queue.reschedule([(c.row_id, c.lease_until_ms, 0, None) for c in claims])
            raise
        stale = [c.row_id for c in claims if c.row_id not in pending]
        if stale:
            # A producer queued these from a read made before they were sent.
            self.queue.finish(stale, "dropped")
            log.info("dropped %d jobs whose rows are no longer pending", len(stale))
        # A claim for a row whose send is still in flight lapses: Redis lost the
        # job meanwhile and it was queued again; the send in flight records it.
        starting = [c for c in claims if c.row_id in pending and c.row_id not in self.in_flight]
        plans = []
        for claim in starting:
            row = pending[claim.row_id]
            job = with_row_params(claim.job, row) if claim.job else self.rebuilt_job(claim, row)
            plans.append((job, self.plan(job, row.generation)))
        try:
            opted_out = self.opt_outs.opted_out_among(p.phone for _, p in plans if isinstance(p, Message))
        except ServiceUnavailable:
            self.mysql_lost()
            self.queue.reschedule([(c.row_id, c.lease_until_ms, 0, None) for c in starting])
            raise
        self.leases.hold([c.row_id for c in starting], lease)
        messages = []
        for job, plan in plans:
            if isinstance(plan, Message) and plan.phone in opted_out:
                plan = SendResult(Outcome.FAILED, detail=OPTED_OUT)
            if isinstance(plan, Message):
                self.in_flight[job.row_id] = job
                messages.append((job, plan))
            else:
                self.ended.append((job, plan))
        self.senders.recall(message.phone for _, message in messages)
        self.workers.submit(messages)
        return len(claims)

    def rebuilt_job(self, claim: Claim, row: Row) -> Job:
        log.warning("job:%d held a value that is not a job; rebuilt it from the row", claim.row_id)
        return Job(claim.row_id, row.phone, params=row.params)

    def plan(self, job: Job, generation: int) -> Message | SendResult:
        """The message to send for a claimed job, or its outcome now: a 2xx
        already kept in the job is recorded, an unusable phone fails."""
        if job.sent:
            return SendResult(Outcome.SENT, detail=ACCEPTED_EARLIER)
        if job.problem:
            return SendResult(Outcome.FAILED, detail=job.problem)
        if job.expired(now_ms()):
            return SendResult(Outcome.FAILED, detail=EXPIRED)
        try:
            phone = normalise_phone(job.phone, self.settings.default_region)
        except InvalidPhone as exc:
            return SendResult(Outcome.FAILED, detail=str(exc))
        return Message(job.row_id, phone, idempotency_key(self.settings.table, job.row_id, generation), job.params)

    async def send(self, item: tuple[Job, Message]) -> SendResult | None:
        """Runs on the sends' loop. None means not sent: no sender may be used
        now, or see `may_send`; a half-open breaker's trial not used goes back."""
        job, message = item
        turn = await self.senders.turn(message.phone)
        if turn is None:
            return None
        if isinstance(turn, Wait):
            self.wait_levels[turn.reason] = logging.WARNING if turn.stopped else logging.INFO
            return SendResult(Outcome.WAIT, detail=turn.reason, retry_after=turn.seconds)
        if not self.may_send(message):
            await turn.give_back()
            return None
        if job.expired(now_ms()):
            # Checked again here, after any wait for a paced slot: a message
            # past its validity never goes out late.
            await turn.give_back()
            return SendResult(Outcome.FAILED, detail=EXPIRED)
        result = await turn.send(message)
        if self.mysql_away and result.outcome is Outcome.SENT:
            await asyncio.to_thread(self.remember_at_once, accepted(job, result))
        return result

    def may_send(self, message: Message) -> bool:
        """Not when the lease was lost or is nearly over (another consumer may
        be about to claim the job), nor while MySQL is away (a 2xx could not
        be recorded, so better not to send yet), nor while paused or outside
        the send window (the job goes back to the queue)."""
        return (
            not self.mysql_away
            and not self.holding
            and self.leases.remaining_ms(message.row_id) >= self.settings.lease_seconds * 500
        )

    def remember_at_once(self, job: Job) -> None:
        """While MySQL is away, a 2xx must not wait for the next cycle to be
        kept: this process could be killed before then."""
        try:
            self.queue.remember_sent([job])
        except ServiceUnavailable as exc:
            log.warning("could not keep the 2xx of row %d in Redis either: %s", job.row_id, exc)

    @staticmethod
    def send_crashed(_item: tuple[Job, Message], exc: Exception) -> SendResult:
        return SendResult(Outcome.RETRY, detail=f"internal error: {type(exc).__name__}")

    def collect(self, timeout: float) -> None:
        if not self.in_flight:
            return
        for (job, _), result in self.workers.results(timeout):
            del self.in_flight[job.row_id]
            self.ended.append((job, result))

    def sort(self, ended: list[tuple[Job, SendResult | None]]) -> Outcomes:
        """Decide what each ended send means for its row: sent, failed, retried or handed back."""
        out = Outcomes()
        for job, result in ended:
            attempt = job.attempts + 1
            if result is None:
                out.moves.append((job.row_id, 0, None))
                continue
            if result.outcome is Outcome.WAIT:
                # Not an attempt: the row waits for its own sender or a daily slot.
                out.moves.append((job.row_id, int((result.retry_after or 0) * 1000), None))
                out.waits[result.detail] += 1
                continue
            if result.detail == ACCEPTED_EARLIER:
                # Its sender died before it could write this line.
                out.history.append(Attempt(job.row_id, attempt, "sent", None, job.message_id, None, None, job.sender))
            else:
                out.history.append(self.history_line(job, attempt, result))
                out.sends[result.sender or "-", result.outcome.value] += 1
                if result.latency_ms is not None:
                    out.latencies.append(result.latency_ms / 1000)
            if result.outcome is Outcome.SENDER_DOWN:
                # Its breaker is open now; the row goes to another sender or waits.
                out.moves.append((job.row_id, 0, None))
            elif result.outcome is Outcome.SENT:
                out.sent.append(job)
            elif result.outcome is Outcome.FAILED or attempt >= self.settings.max_attempts:
                out.failed.append(Failure(job.row_id, attempt, result.detail or "failed", result.status))
            else:
                delay = retry_delay(attempt, self.settings.retry_delay, result.retry_after)
                out.moves.append((job.row_id, int(delay * 1000), dataclasses.replace(job, attempts=attempt)))
        return out

    def history_line(self, job: Job, attempt: int, result: SendResult) -> Attempt:
        if result.outcome is Outcome.SENT:
            outcome = "sent"
        elif result.outcome is Outcome.FAILED or (
            result.outcome is Outcome.RETRY and attempt >= self.settings.max_attempts
        ):
            outcome = "failed"
        else:
            outcome = "retry"
        return Attempt(
            job.row_id,
            attempt,
            outcome,
            result.status,
            result.message_id,
            result.detail or None,
            result.latency_ms,
            result.sender,
        )

    def record(self) -> None:
        """Write the outcomes of ended sends: MySQL first, then Redis.

        After a MySQL error the same outcomes are written again on the next
        cycle; after a Redis error, only the Redis steps (each is safe to
        repeat) and the MySQL write of sends that ended since.
        """
        if not self.ended:
            return
        self.stuck = True
        out = self.sort(self.ended)
        if self.in_mysql < len(self.ended):
            self.write_outcomes(out if not self.in_mysql else self.sort(self.ended[self.in_mysql :]))
            self.in_mysql = len(self.ended)
        self.mysql_away = False
        with self.leases.lock:
            # Moves are conditional on the lease Redis has; the lock keeps the
            # lease keeper from renewing it between reading and moving.
            held = self.leases.held
            moves = [(row_id, held[row_id], delay, job) for row_id, delay, job in out.moves if row_id in held]
            self.queue.finish([job.row_id for job in out.sent], "sent")
            self.queue.finish([f.row_id for f in out.failed], "failed")
            self.queue.reschedule(moves)
            for job, _ in self.ended:
                held.pop(job.row_id, None)
        retried = sum(1 for _, _, job in out.moves if job is not None)
        self.queue.count("retried", retried)
        metrics.RETRIES.labels(self.partition_label).inc(retried)
        phones = {job.row_id: job.phone for job, _ in self.ended}
        for failure in out.failed:
            log.warning(
                "row %d (%s) failed after %d attempts: %s",
                failure.row_id,
                self.shown(phones[failure.row_id]),
                failure.attempts,
                failure.reason,
                extra={"row_id": failure.row_id},
            )
        self.tally.update(sent=len(out.sent), failed=len(out.failed), retried=retried)
        for (sender, outcome), count in out.sends.items():
            metrics.SENDS.labels(self.partition_label, self.settings.provider, sender, outcome).inc(count)
        for seconds in out.latencies:
            self.send_seconds.observe(seconds)
        self.waiting.update(out.waits)
        self.remembered -= {job.row_id for job, _ in self.ended}
        self.ended = []
        self.in_mysql = 0
        self.stuck = False
        self.last_record = time.monotonic()

    def write_outcomes(self, out: Outcomes) -> None:
        """Rows sent and failed, their reasons and the history lines, in one
        MySQL transaction. When MySQL refuses something in it, the parts go
        one by one (sends, history, failures), so a refused reason or history
        line never costs a recorded send; refused history lines are dropped
        with a line, a refused reason stops the consumer as before."""
        sent = [job.row_id for job in out.sent]
        try:
            try:
                self.table.record(sent, out.failed, out.history)
            except RowRejected:
                self.table.record(sent, [], [])
                try:
                    self.table.record([], [], out.history)
                except RowRejected as exc:
                    log.warning("dropped %d history lines MySQL refused: %s", len(out.history), exc)
                self.table.record([], out.failed, [])
        except ServiceUnavailable:
            self.mysql_lost()
            raise

    def shown(self, phone: str | None) -> str:
        """A phone as logs show it: masked unless SHOW_PHONES."""
        return (phone or "") if self.settings.show_phones else mask_phone(phone)

    def mysql_lost(self) -> None:
        """MySQL just failed: from now on each 2xx goes into Redis as it
        arrives, and those that arrived before are put there at once, not
        after the outage backoff (this process could be killed meanwhile)."""
        self.mysql_away = True
        self.collect(timeout=0)
        self.remember_sent(
            [accepted(job, result) for job, result in self.ended if result and result.outcome is Outcome.SENT]
        )

    def remember_sent(self, sent: list[Job]) -> None:
        """MySQL is away: keep each 2xx in its Redis job, so it survives this process."""
        new = [job for job in sent if job.row_id not in self.remembered]
        if new:
            self.queue.remember_sent(new)
            self.remembered.update(job.row_id for job in new)
            log.warning("MySQL is away: %d sends accepted by the endpoint are kept in Redis until it is back", len(new))

    def report(self, force: bool = False) -> None:
        """One summary line every REPORT_EVERY seconds, never one per send."""
        elapsed = time.monotonic() - self.last_report
        if not force and elapsed < REPORT_EVERY:
            return
        if self.tally:
            log.info(
                "sent %d, retrying %d, failed %d in %.0f s (%.0f msg/s), %d in flight",
                self.tally["sent"],
                self.tally["retried"],
                self.tally["failed"],
                elapsed,
                self.tally["sent"] / max(elapsed, 0.001),
                len(self.in_flight),
            )
        for reason, count in self.waiting.items():
            log.log(self.wait_levels.get(reason, logging.INFO), "%d rows wait: %s", count, reason)
        self.tally.clear()
        self.waiting.clear()
        self.last_report = time.monotonic()

    def vitals(self) -> dict:
        """What its heartbeat tells `status`: jobs claimed and not yet recorded."""
        return {
            "in_flight": len(self.in_flight) + len(self.ended),
            "paused": int(self.pause.paused),
            "outside_window": int(not self.window_was_open),
        }

    def request_stop(self) -> None:
        self.stopping = True
        self.senders.stop()  # sends waiting for a paced slot give their jobs back

    def shutdown(self) -> None:
        """Finish in-flight sends and their bookkeeping; hand unstarted claims back. Once."""
        if self.shut:
            return
        self.shut = True
        for job, _ in self.workers.take_unstarted():
            del self.in_flight[job.row_id]
            self.ended.append((job, None))
        deadline = time.monotonic() + self.settings.request_timeout + 1
        while self.in_flight and time.monotonic() < deadline:
            self.collect(timeout=0.1)
        try:
            self.record()
        except ServiceUnavailable as exc:
            log.warning("could not record %d outcomes before exit (%s); their leases will expire", len(self.ended), exc)
        self.leases.stop()
        self.report(force=True)
        self.senders.close()  # before the workers stop: an aiohttp engine closes on their loop
        self.workers.stop()
        self.table.close()
