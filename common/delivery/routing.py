"""Choosing the sender for each message: round-robin among the healthy ones,
or the phone's own sender when senders are sticky.

Each sender has a circuit breaker and, when set, a pacer and a daily limit
of recipients; all live in Redis, so the choice is shared by every consumer
on every host. A consumer asks for a turn for a phone (which may wait for a
paced slot), sends through the route it got, and the route reports the
outcome to its breaker. A turn never waits for a breaker or a daily slot:
when no sender may take the phone now, the answer is a `Wait`, and the row
goes back to the queue for that long.

All of it runs on the sends' asyncio loop. Redis is asked only when a
breaker's known state is stale or a slot is paced, and then from the loop's
executor, never on the loop itself.
"""

import asyncio
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Sequence

import redis

from common.delivery.breaker import STALE, Breaker, BreakerPolicy
from common.delivery.daily_limit import Admission, DailyLimit
from common.delivery.pacing import Pacer
from common.delivery.sender import Message, Outcome, Sender, SendResult
from common.delivery.sticky import Remembered, ranking
from common.errors import ConfigError, ServiceUnavailable
from common.queue import keys
from common.queue.jobs import redis_failure

log = logging.getLogger(__name__)

MAX_NAP = 0.25  # longest sleep between asks for a turn, so a stop is seen soon
REFUSED_PAUSE = 1.0  # seconds without claims after a turn found no sender allowed
SHORTEST_WAIT = 5.0  # seconds a row waits at least for its sender, so it is not claimed again at once
LONGEST_WAIT = 300.0  # and at most: a raised limit or a recovered sender is seen within this


class Again:
    """What a pass over the senders says when a paced slot was not free yet: ask again."""


AGAIN = Again()


def breaker_outcome(result: SendResult) -> str:
    """What a send says about the sender (not the row): down, fail or ok."""
    if result.outcome is Outcome.SENDER_DOWN:
        return "down"
    if result.outcome is Outcome.RETRY and not result.per_row:
        return "fail"
    return "ok"


class Route:
    """One sender with its breaker and pacer."""

    def __init__(self, sender: Sender, breaker: Breaker, pacer: Pacer | None, limit: DailyLimit | None = None):
        self.sender = sender
        self.breaker = breaker
        self.pacer = pacer
        self.limit = limit
        self.name = sender.name
        self.last_success = float("-inf")  # monotonic time the latest send through it succeeded
        self._pace_lock: asyncio.Lock | None = None

    @property
    def pace_lock(self) -> asyncio.Lock:
        """Held by the one send waiting for this sender's paced slot; made on
        first use, on the sends' loop."""
        if self._pace_lock is None:
            self._pace_lock = asyncio.Lock()
        return self._pace_lock

    async def send(self, message: Message) -> SendResult:
        started = time.monotonic()
        try:
            result = await self.sender.send(message)
        except Exception as exc:
            result = self.crashed(exc)
        return await self.reported(result, started)

    def crashed(self, exc: Exception) -> SendResult:
        """A sender bug is a failed send like any other: the breaker hears of
        it (a half-open trial is reported, never left hanging) and the row is retried."""
        log.error("sender %s raised instead of returning an outcome", self.name, exc_info=exc)
        return SendResult(Outcome.RETRY, detail=f"internal error: {type(exc).__name__}")

    async def reported(self, result: SendResult, started: float) -> SendResult:
        """Stamp the result with this sender and its latency, and tell the
        breaker; never let that fail a send that already happened.

        A failure counts towards opening only if no send through this sender
        succeeded since it started: "consecutive" in the order sends began.
        Otherwise sends that hang pile up whenever the consumer stops
        claiming (an outage, a shutdown), time out together, and would open
        the breaker of a sender that answers most sends."""
        ended = time.monotonic()
        result = result.through(self.name, round((ended - started) * 1000))
        outcome = breaker_outcome(result)
        if outcome == "ok":
            self.last_success = ended
        elif outcome == "fail" and self.last_success > started:
            return result
        if self.breaker.needs_record(outcome):
            try:
                await asyncio.to_thread(self.breaker.record, outcome, result.detail)
            except redis.RedisError as exc:
                log.debug("could not update the breaker of %s: %s", self.name, exc)
        return result


def not_received(result: SendResult) -> bool:
    """The gateway said it did not take the message. A timeout or a reset
    says nothing: the recipient may have it, so its daily slot is kept."""
    if result.outcome in (Outcome.FAILED, Outcome.SENDER_DOWN):
        return True
    return result.outcome is Outcome.RETRY and result.status is not None


@dataclasses.dataclass(frozen=True)
class Turn:
    """A sender to send one message through now. A half-open breaker's trial
    or a daily-limit slot that is not used must be given back."""

    route: Route
    trial: bool = False
    admission: Admission | None = None

    async def send(self, message: Message) -> SendResult:
        result = await self.route.send(message)
        if not_received(result):
            await self.give_back_slot()
        return result

    async def give_back(self) -> None:
        await self.give_back_slot()
        if self.trial:
            try:
                await asyncio.to_thread(self.route.breaker.give_back_trial)
            except redis.RedisError as exc:
                log.debug("could not give back a trial of %s (it times out): %s", self.route.name, exc)

    async def give_back_slot(self) -> None:
        if self.admission and self.admission.stamp is not None and self.route.limit:
            try:
                await asyncio.to_thread(self.route.limit.release, self.admission)
            except redis.RedisError as exc:
                log.debug("could not give back a daily slot of %s: %s", self.route.name, exc)


@dataclasses.dataclass(frozen=True)
class Wait:
    """No sender may take this phone now: the row waits `seconds` in the queue.
    `stopped`: for a stopped sender (someone should look), not a full one (only time)."""

    seconds: float
    reason: str
    stopped: bool = False


class SenderPool:
    def __init__(
        self,
        routes: list[Route],
        client: redis.Redis | None = None,
        prefix: str = "",
        sticky: bool = False,
        remembered: Remembered | None = None,
    ):
        self.routes = routes
        self.client = client
        self.prefix = prefix  # KEY_PREFIX: the pool registers its senders and their limits for `status`
        self.sticky = sticky
        self.remembered = remembered  # set when a sticky phone may fall over to another sender
        self.names = [route.name for route in routes]
        self.turns = itertools.count()
        self.stopping = threading.Event()
        self.refused_at = float("-inf")

    @classmethod
    def build(cls, senders: Sequence[Sender], client: redis.Redis, settings) -> "SenderPool":
        policy = BreakerPolicy(
            settings.breaker_failures,
            settings.breaker_cooldown,
            settings.breaker_successes,
            trial_timeout=2 * settings.request_timeout + 1,
        )
        routes = []
        rates = settings.sender_rates(len(senders))
        limits = settings.sender_daily_limits(len(senders))
        for sender, rate, limit in zip(senders, rates, limits):
            pace_key = keys.pace(settings.key_prefix, sender.name)
            pacer = Pacer(client, pace_key, rate, settings.jitter) if rate or settings.jitter else None
            breaker = Breaker(client, keys.breaker(settings.key_prefix, sender.name), sender.name, policy)
            recipients = keys.recipients(settings.key_prefix, sender.name)
            daily = DailyLimit(client, recipients, limit, sender.name) if limit else None
            routes.append(Route(sender, breaker, pacer, daily))
        names = [route.name for route in routes]
        if len(set(names)) < len(names):
            raise ConfigError(
                f"two senders have the same name ({', '.join(names)}): give each its own "
                "URL, session, phone number id or user"
            )
        remembered = None
        if settings.sticky_sender and settings.sticky_fallback:
            remembered = Remembered(client, keys.sticky(settings.key_prefix))
        return cls(routes, client, settings.key_prefix, settings.sticky_sender, remembered)

    def probe(self) -> None:
        """At start-up: fail only when no sender can be used; open the breaker of any that refuses us."""
        if self.client is not None:
            try:
                self.client.sadd(keys.senders(self.prefix), *self.names)
                self.publish_limits(self.client)
            except redis.RedisError as exc:
                raise redis_failure("register the senders", exc) from None
        problems = []
        for route in self.routes:
            try:
                route.sender.probe()
            except (ConfigError, ServiceUnavailable) as exc:
                problems.append((route, exc))
        if len(problems) == len(self.routes):
            raise problems[0][1]
        for route, problem in problems:
            log.error("%s; sending through the other senders", problem)
            if isinstance(problem, ConfigError):
                route.breaker.record("down", str(problem))

    def publish_limits(self, client: redis.Redis) -> None:
        """Each sender's daily limit, for `status` to show how much of it is used."""
        for route in self.routes:
            key = keys.daily_limit(self.prefix, route.name)
            if route.limit:
                client.set(key, route.limit.limit)
            else:
                client.delete(key)

    def recall(self, phones) -> None:
        """Before a claimed batch is sent: the senders its phones fell over to (one Redis read)."""
        if self.remembered is not None:
            try:
                self.remembered.recall(phones)
            except redis.RedisError as exc:
                log.debug("could not read which senders phones fell over to: %s", exc)

    def ready(self) -> bool:
        """Worth claiming jobs: some sender's breaker may let a send through,
        and it is not known to be at its daily limit."""
        if time.monotonic() - self.refused_at < REFUSED_PAUSE:
            return False
        return any(
            route.breaker.available_in() == 0 and not (route.limit and route.limit.full_for()) for route in self.routes
        )

    def candidates(self, phone: str) -> list[Route]:
        """The senders that may take this phone, in the order to try them."""
        if not self.sticky:
            start = next(self.turns)
            return [self.routes[(start + step) % len(self.routes)] for step in range(len(self.routes))]
        ranked = [self.routes[i] for i in ranking(self.names, phone)]
        if self.remembered is None:
            return ranked[:1]
        moved = self.remembered.senders.get(phone)
        return sorted(ranked, key=lambda route: route.name != moved)  # stable: the rest keep their ranking

    async def turn(self, phone: str) -> Turn | Wait | None:
        """A sender to send to `phone` through now; a Wait when none may take
        it now; None when every sender is stopped, we are stopping, or Redis fails.

        Candidates are tried in order (round-robin, or the phone's own sender
        first): its breaker must let a send through, then, when it is paced,
        one send per sender reserves its slot and waits for it (the others
        wait for that one, not on Redis), and only then does its daily limit
        count the phone, so waiting sends hold no slot of the day. A sticky
        phone whose sender is full waits for that sender; it falls over (with
        STICKY_FALLBACK) only from a stopped one."""
        try:
            while not self.stopping.is_set():
                chosen = await self.choose(phone)
                if not isinstance(chosen, Again):
                    return chosen
            return None
        except redis.RedisError as exc:
            log.debug("no turn while Redis fails: %s", exc)
            return None

    async def choose(self, phone: str) -> Turn | Wait | Again | None:
        """One pass over the candidates; AGAIN when a paced slot was not free yet."""
        waits: list[tuple[float, str, bool]] = []
        stopped = 0
        candidates = self.candidates(phone)
        for route in candidates:
            allowed = route.breaker.known()
            if allowed is STALE:
                allowed = await asyncio.to_thread(route.breaker.allow)
            if not allowed:
                stopped += 1
                waits.append((route.breaker.available_in(), f"sender {route.name} is stopped", True))
                continue
            taken = await self.take(Turn(route, trial=allowed == "trial"), phone, moved=route is not candidates[0])
            if not isinstance(taken, float):
                return taken
            assert route.limit is not None  # only a daily limit answers with a wait
            waits.append((taken, f"sender {route.name} is at its daily limit of {route.limit.limit}", False))
            if self.sticky:
                return self.wait(waits)
        if stopped == len(self.routes):
            # Every sender is stopped: no claims for a moment, and the row goes back at once.
            self.refused_at = time.monotonic()
            return None
        return self.wait(waits)

    async def take(self, turn: Turn, phone: str, moved: bool) -> Turn | Again | float:
        """The turn once it has its paced slot and its daily slot for `phone`
        (and, when the phone `moved` here from a stopped sender, that move is
        remembered); else AGAIN, or the seconds until the sender has room. A
        turn not handed out, however this ends, is given back."""
        route, handed_out = turn.route, False
        try:
            if route.pacer and not (await self.wait_for_slot(route) and not self.stopping.is_set()):
                return AGAIN
            if route.limit:
                admission = await asyncio.to_thread(route.limit.admit, phone)
                if not isinstance(admission, Admission):
                    return admission
                turn = Turn(route, turn.trial, admission)
            if moved and self.remembered is not None:
                await self.remember(phone, route.name)
            handed_out = True
            return turn
        finally:
            if not handed_out:
                await asyncio.shield(turn.give_back())

    @staticmethod
    def wait(waits: list[tuple[float, str, bool]]) -> Wait:
        seconds, reason, stopped = min(waits)
        return Wait(min(max(seconds, SHORTEST_WAIT), LONGEST_WAIT), reason, stopped)

    async def remember(self, phone: str, sender: str) -> None:
        """Best effort: a move not remembered is made again next time."""
        assert self.remembered is not None
        try:
            await asyncio.to_thread(self.remembered.remember, phone, sender)
        except redis.RedisError as exc:
            log.debug("could not remember that a phone moved to %s: %s", sender, exc)

    async def wait_for_slot(self, route: Route) -> bool:
        assert route.pacer is not None  # only paced routes wait for a slot
        try:
            await asyncio.wait_for(route.pace_lock.acquire(), MAX_NAP)
        except TimeoutError:
            return False
        try:
            granted, wait = await asyncio.to_thread(route.pacer.reserve)
            await asyncio.sleep(wait if granted else min(wait, MAX_NAP))
            return granted
        finally:
            route.pace_lock.release()

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for route in self.routes:
            route.sender.close()
