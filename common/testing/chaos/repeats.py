"""Which rows may be sent again, and how often, because of the run's faults:
the one rule that tells an explained repeat from a broken guarantee."""

from collections import Counter, defaultdict

# Why a row may be sent again, in the order repeats are put down to them: an
# answer that never arrived is always retried, a kill or a restart only may be.
ANSWER_CUT, CONSUMER_KILL = "answers cut by the deadline", "consumer kills"
REDIS_RESTART, REDIS_FAILOVER = "the Redis restart", "the Redis failover"


class RepeatWindows:
    """Which rows may be sent again, and how often, because of the run's faults.

    A row exposed by kills at k different delivery counts may be delivered k
    more times (two kills with no send in between expose it once); each Redis
    restart or failover that found it leased allows one more; so does each of its 2xx
    answers that the mock trickled past the request deadline.
    """

    def __init__(self):
        self.kill_counts: dict[int, set[int]] = defaultdict(set)
        self.redis_leased: Counter = Counter()
        self.failover_leased: Counter = Counter()
        self.answers_cut: Counter = Counter()

    def consumer_killed(self, exposed: dict[int, int]) -> None:
        for row_id, count in exposed.items():
            self.kill_counts[row_id].add(count)

    def redis_restarted(self, leased: set[int]) -> None:
        self.redis_leased.update(leased)

    def redis_failed_over(self, leased: set[int]) -> None:
        """Replication is asynchronous: a lease taken just before the primary
        died may be missing on the replica, and its job claimed again."""
        self.failover_leased.update(leased)

    def answers_trickled(self, trickled: dict[int, int]) -> None:
        self.answers_cut.update(trickled)

    def windows(self, row_id: int) -> dict[str, int]:
        return {
            ANSWER_CUT: self.answers_cut.get(row_id, 0),
            CONSUMER_KILL: len(self.kill_counts.get(row_id, ())),
            REDIS_RESTART: self.redis_leased.get(row_id, 0),
            REDIS_FAILOVER: self.failover_leased.get(row_id, 0),
        }

    def allowed(self, row_id: int) -> int:
        return 1 + sum(self.windows(row_id).values())

    def explain(self, row_id: int, deliveries: int) -> Counter:
        """The row's repeats put down to its windows, as far as they reach."""
        left, reasons = deliveries - 1, Counter[str]()
        for reason, allowed in self.windows(row_id).items():
            reasons[reason] = min(left, allowed)
            left -= reasons[reason]
        return reasons
