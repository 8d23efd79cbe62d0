"""The end of the run: what it left behind (MySQL's counts, Redis's jobs, the
mock's deliveries), every reason it fails, and the table that shows both."""

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from common.store.campaign import FAILED, PENDING, SENT
from common.testing.chaos.campaign import deliveries_by_row, phone_of, queues, row_of
from common.testing.chaos.config import BATCH_SIZE, STOP_GRACE, TABLE
from common.testing.chaos.faults import HeldFault
from common.testing.chaos.repeats import ANSWER_CUT, CONSUMER_KILL, REDIS_FAILOVER, REDIS_RESTART

if TYPE_CHECKING:
    from common.testing.chaos.run import ChaosRun


@dataclass
class Findings:
    """The end state: MySQL's counts, Redis's jobs, the mock's deliveries."""

    counts: dict[int, int]
    unqueued: list[int]  # pending rows with no job in Redis
    never_delivered: list[int]  # rows marked sent without a 2xx for their key
    unhistoried: list[int]  # rows marked sent without a 'sent' history line (its message id)
    stats: dict
    repeats: int
    repeated: dict[int, int]  # row -> deliveries, for rows delivered more than once
    explained: Counter  # repeats put down to each window
    unexplained: dict[int, tuple[int, int]]  # row -> (deliveries, deliveries the faults allow)
    trickled_keys: int  # keys with a 2xx answer trickled past the deadline
    foreign_keys: list[str]
    mismatched: list[int]  # rows whose phone got a different number of 2xx than their key
    consumer_kills: int
    window_kills: int


@dataclass
class Verdict:
    """What the table shows, and why the run passes or fails."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def tally(run: "ChaosRun") -> Findings:
    """What the run left behind, read once every process is stopped."""
    pending = sorted(run.campaign.ids(PENDING))
    client = run.redis.client()
    job_key = queues(client)[0].job_key
    pipe = client.pipeline(transaction=False)
    for row_id in pending:
        pipe.exists(job_key(row_id))
    deliveries = run.mock.deliveries()
    recipients = run.mock.recipients()
    trickled = deliveries_by_row(run.mock.trickled())
    run.windows.answers_trickled(trickled)
    run.trickle.answers, run.trickle.keys = sum(trickled.values()), len(trickled)
    by_row = deliveries_by_row(deliveries)
    repeated = {row_id: count for row_id, count in by_row.items() if count > 1}
    explained: Counter = Counter()
    for row_id, count in repeated.items():
        explained.update(run.windows.explain(row_id, count))
    consumer_kills = [kill for kill in run.kills if kill.exposed is not None]
    sent = run.campaign.ids(SENT)
    return Findings(
        counts=run.campaign.counts(),
        unqueued=[row_id for row_id, queued in zip(pending, pipe.execute()) if not queued],
        never_delivered=sorted(sent - by_row.keys()),
        unhistoried=sorted(sent - run.campaign.rows_with_history("sent")),
        stats=run.mock.stats(),
        repeats=sum(count - 1 for count in deliveries.values()),
        repeated=repeated,
        explained=explained,
        unexplained={
            row_id: (count, run.windows.allowed(row_id))
            for row_id, count in repeated.items()
            if count > run.windows.allowed(row_id)
        },
        trickled_keys=len(trickled),
        foreign_keys=sorted(key for key in deliveries if row_of(key) is None),
        # A send carrying another row's key would show here: its phone's count and its key's differ.
        mismatched=sorted(row_id for row_id, count in by_row.items() if recipients.get(phone_of(row_id), 0) != count),
        consumer_kills=len(consumer_kills),
        window_kills=sum(1 for kill in consumer_kills if kill.exposed),
    )


def judge(run: "ChaosRun", found: Findings, codes: dict[str, int | None], elapsed: float) -> Verdict:
    """The table, and every reason the run fails."""
    verdict = Verdict()
    window_events = found.window_kills + run.redis_restarts + run.failover.count
    # A cut answer is a window of one key.
    bound = window_events * (run.options.concurrency * 2 + BATCH_SIZE) + found.trickled_keys
    stats = found.stats
    verdict.lines = [
        ("rows", str(run.options.rows), ""),
        ("sent", str(found.counts[SENT]), ""),
        ("failed", str(found.counts[FAILED]), ""),
        ("still pending", str(found.counts[PENDING]), ""),
        (
            "lost",
            str(len(found.unqueued) + len(found.never_delivered)),
            f"pending with no job queued {len(found.unqueued)}, "
            f"marked sent but never delivered {len(found.never_delivered)}",
        ),
        (
            "sent rows in the history",
            str(found.counts[SENT] - len(found.unhistoried)),
            f"{len(found.unhistoried)} without their 'sent' line",
        ),
        (
            "sends seen by the mock",
            str(stats["delivered"]),
            f"{stats['requests']} requests, {stats['hung']} hung, {stats['unique']} keys",
        ),
        (
            "repeats by idempotency key",
            str(found.repeats),
            f"in {len(found.repeated)} keys, {len(found.unexplained)} unexplained; bound {bound} keys",
        ),
        (
            "repeats explained",
            str(sum(found.explained.values())),
            ", ".join(
                f"{found.explained[reason]} by {reason}"
                for reason in (ANSWER_CUT, CONSUMER_KILL, REDIS_RESTART, REDIS_FAILOVER)
            ),
        ),
        (
            "kills",
            str(len(run.kills)),
            f"{found.consumer_kills} of consumers, {found.window_kills} in the repeat window",
        ),
        (
            ("Redis failovers", str(run.failover.count), run.failover.detail())
            if run.options.failover
            else ("Redis restarts", str(run.redis_restarts), f"{run.redis_leased} jobs leased at the restart")
        ),
        ("MySQL restarts", str(run.mysql_restarts), f"down {run.mysql_down_for:.1f} s"),
        *(fault_line(fault, enabled) for fault, enabled in run.held_faults()),
        ("elapsed seconds", f"{elapsed:.1f}", ""),
    ]
    not_begun = run.schedule.not_begun()
    if not_begun:
        verdict.notes.append(f"the chaos stopped before these faults began: {', '.join(not_begun)}")
    if found.repeated and not found.mismatched:
        sample = ", ".join(stats["duplicate_keys"][:5])
        verdict.notes.append(f"every repeat carried its row's own Idempotency-Key; the mock's sample: {sample}")

    fail = verdict.failures.append
    if found.unqueued:
        fail(f"{len(found.unqueued)} pending rows have no job queued (e.g. ids {found.unqueued[:5]})")
    if found.never_delivered:
        fail(
            f"{len(found.never_delivered)} rows are marked sent but the endpoint never took them "
            f"(e.g. ids {found.never_delivered[:5]})"
        )
    if found.unhistoried:
        fail(
            f"{len(found.unhistoried)} rows are marked sent without a 'sent' line in delivery_attempts "
            f"(e.g. ids {found.unhistoried[:5]})"
        )
    if found.unexplained:
        sample = ", ".join(
            f"{TABLE}:{row_id} x{count} (allowed {allowed})"
            for row_id, (count, allowed) in sorted(found.unexplained.items())[:5]
        )
        fail(
            f"{len(found.unexplained)} keys were sent again with no kill, Redis restart or failover, or cut answer "
            f"to explain it: {sample}"
        )
    if len(found.repeated) > bound:
        fail(
            f"{len(found.repeated)} repeated keys, more than the {bound} that {window_events} window events can explain"
        )
    if found.counts[PENDING]:
        fail(f"{found.counts[PENDING]} rows still pending after settling")
    if found.foreign_keys:
        fail(
            f"{len(found.foreign_keys)} sends without an Idempotency-Key of the form {TABLE}:<id> "
            f"(e.g. {found.foreign_keys[:3]})"
        )
    if found.mismatched:
        fail(
            f"{len(found.mismatched)} rows' phones got a different number of messages than their "
            f"Idempotency-Key shows (e.g. ids {found.mismatched[:5]})"
        )
    for fault, _enabled in run.held_faults():
        problem = fault.problem() if fault.began is not None else None
        if problem:
            fail(problem)
    for exit_ in run.roles.exits:
        fail(f"{exit_.module} exited {exit_.code} on its own at {exit_.at:.1f} s")
    for module, code in codes.items():
        if code is None:
            fail(f"{module} did not exit within {STOP_GRACE:g} s of SIGTERM")
        elif code != 0:
            fail(f"{module} exited {code} on SIGTERM (expected 0)")
    for module, count in run.roles.tracebacks().items():
        if count:
            fail(f"{count} tracebacks in the log of {module}")
    return verdict


def fault_line(fault: HeldFault, enabled: bool) -> tuple[str, str, str]:
    """The table's line for a held fault: how often it ran, and what it did."""
    if not enabled:
        return fault.name, "0", "off"
    if fault.began is None:
        return fault.name, "0", "never began: the chaos stopped first"
    return fault.name, "1", fault.detail()


def print_verdict(verdict: Verdict) -> None:
    width = max(len(name) for name, _, _ in verdict.lines)
    values = max(len(value) for _, value, _ in verdict.lines)
    click.echo("")
    for name, value, detail in verdict.lines:
        click.echo(f"  {name:<{width}}  {value:>{values}}  {detail}".rstrip())
    click.echo("")
    for note in verdict.notes:
        click.echo(f"chaos: {note}")
    for failure in verdict.failures:
        click.echo(f"chaos: FAIL: {failure}")
    if not verdict.failures:
        click.echo("chaos: PASS")
