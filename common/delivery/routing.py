"""Choosing the sender for each message: round-robin among the healthy ones.

Each sender has a circuit breaker and, when a rate or jitter is set, a pacer;
both live in Redis, so the choice is shared by every consumer on every host.
A consumer asks for a turn (which may wait for a paced slot), sends through
the route it got, and the route reports the outcome to its breaker. A turn
never waits for a breaker: with none allowing sends it is None at once, and
the consumer stops claiming until one may.

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
from common.delivery.pacing import Pacer
from common.delivery.sender import Message, Outcome, Sender, SendResult
from common.errors import ConfigError, ServiceUnavailable
from common.queue import keys
from common.queue.jobs import redis_failure

log = logging.getLogger(__name__)

MAX_NAP = 0.25  # longest sleep between asks for a turn, so a stop is seen soon
REFUSED_PAUSE = 1.0  # seconds without claims after a turn found no sender allowed


def breaker_outcome(result: SendResult) -> str:
    """What a send says about the sender (not the row): down, fail or ok."""
    if result.outcome is Outcome.SENDER_DOWN:
        return "down"
    if result.outcome is Outcome.RETRY and not result.per_row:
        return "fail"
    return "ok"


class Route:
    """One sender with its breaker and pacer."""

    def __init__(self, sender: Sender, breaker: Breaker, pacer: Pacer | None):
        self.sender = sender
        self.breaker = breaker
        self.pacer = pacer
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


@dataclasses.dataclass(frozen=True)
class Turn:
    """A sender to send one message through now. A half-open breaker's trial
    that is not used must be given back, or the breaker waits for it."""

    route: Route
    trial: bool = False

    async def send(self, message: Message) -> SendResult:
        return await self.route.send(message)

    async def give_back(self) -> None:
        if self.trial:
            try:
                await asyncio.to_thread(self.route.breaker.give_back_trial)
            except redis.RedisError as exc:
                log.debug("could not give back a trial of %s (it times out): %s", self.route.name, exc)


class SenderPool:
    def __init__(self, routes: list[Route], client: redis.Redis | None = None, registry_key: str = ""):
        self.routes = routes
        self.client = client
        self.registry_key = registry_key  # a set of sender names, for `status` to find their breakers
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
        for sender, rate in zip(senders, settings.sender_rates(len(senders))):
            pace_key = keys.pace(settings.key_prefix, sender.name)
            pacer = Pacer(client, pace_key, rate, settings.jitter) if rate or settings.jitter else None
            breaker = Breaker(client, keys.breaker(settings.key_prefix, sender.name), sender.name, policy)
            routes.append(Route(sender, breaker, pacer))
        names = [route.name for route in routes]
        if len(set(names)) < len(names):
            raise ConfigError(
                f"two senders have the same name ({', '.join(names)}): give each its own "
                "URL, session, phone number id or user"
            )
        return cls(routes, client, keys.senders(settings.key_prefix))

    def probe(self) -> None:
        """At start-up: fail only when no sender can be used; open the breaker of any that refuses us."""
        if self.client is not None:
            try:
                self.client.sadd(self.registry_key, *(route.name for route in self.routes))
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

    def ready(self) -> bool:
        """Worth claiming jobs: some sender's breaker may let a send through."""
        if time.monotonic() - self.refused_at < REFUSED_PAUSE:
            return False
        return any(route.breaker.available_in() == 0 for route in self.routes)

    async def next_allowed(self) -> Turn | None:
        """The next sender in turn whose breaker lets a send through, or None."""
        start = next(self.turns)
        for step in range(len(self.routes)):
            route = self.routes[(start + step) % len(self.routes)]
            allowed = route.breaker.known()
            if allowed is STALE:
                allowed = await asyncio.to_thread(route.breaker.allow)
            if allowed:
                return Turn(route, trial=allowed == "trial")
        self.refused_at = time.monotonic()
        return None

    async def turn(self) -> Turn | None:
        """Wait for a sender to send through; None when none may be used now or we are stopping.

        One send per sender reserves its paced slot and waits for it; the
        others wait for that one, not on Redis."""
        while not self.stopping.is_set():
            try:
                turn = await self.next_allowed()
                if turn is None or turn.route.pacer is None:
                    return turn
                if await self.wait_for_slot(turn.route) and not self.stopping.is_set():
                    return turn
                await turn.give_back()
            except redis.RedisError as exc:
                log.debug("no turn while Redis fails: %s", exc)
                return None
        return None

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
