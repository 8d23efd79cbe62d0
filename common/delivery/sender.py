"""Sending one message over HTTP, and reading the answer into an outcome.

The consumer only knows the `Sender` interface, so another gateway or a
faster HTTP engine fits in behind it without touching the loops. Sends are
coroutines; an engine that blocks runs in the sends' executor.
"""

import email.utils
import enum
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

from common.delivery.engines import EngineError, EngineTimeout, HttpEngine
from common.delivery.providers._json import message_id, parsed
from common.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

DETAIL_LENGTH = 200
MAX_RETRY_AFTER = 86_400.0  # seconds: a gateway asking for longer is asked again after a day


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # try again later: 5xx, 408, 429, timeouts, resets
    FAILED = "failed"  # this row can never be sent as it is
    SENDER_DOWN = "sender_down"  # the sender itself is refused (credentials): stop, keep the row
    WAIT = "wait"  # not sent: no sender may take this phone now (sticky, daily limit); not an attempt


@dataclass(frozen=True)
class Message:
    row_id: int
    phone: str  # E.164 digits, without '+'
    idempotency_key: str
    params: dict = field(default_factory=dict)  # column -> text, the row's message variables


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    message_id: str | None = None
    latency_ms: int | None = None
    per_row: bool = False  # a retry about this row only (a timelock), not a sign the sender is failing
    sender: str | None = None  # the name of the sender it went through

    def through(self, sender: str, latency_ms: int) -> "SendResult":
        """This result stamped with its sender and latency (dataclasses.replace
        costs several times more, once per message)."""
        return SendResult(
            self.outcome, self.status, self.detail, self.retry_after, self.message_id, latency_ms, self.per_row, sender
        )


class Sender(Protocol):
    """What a consumer needs of a gateway."""

    name: str  # stable across processes and hosts: keys its breaker and pacing in Redis

    def probe(self) -> None:
        """Check at start-up that the endpoint answers and takes our credentials."""

    async def send(self, message: Message) -> SendResult:
        """Send one message, on the sends' loop; never raises for a network or HTTP failure."""

    def close(self) -> None: ...


def parse_retry_after(value) -> float | None:
    """Retry-After in seconds, from either of its two forms (seconds or an
    HTTP date): finite and at most MAX_RETRY_AFTER; a date in the past is now.
    Anything unreadable is None (our own backoff applies)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def header(headers, name: str):
    """A header's value from whatever mapping an engine gave, or None."""
    try:
        return headers.get(name)
    except (AttributeError, TypeError):
        return None


def classify(status: int, headers, body: str) -> SendResult:
    """Read an HTTP answer: 2xx sent; 401/403 the sender is refused; any other
    4xx is permanent for this row; everything else (408, 429, 5xx, and codes
    a gateway should never answer a POST with: 1xx, 3xx) is worth retrying.
    Never raises, whatever the answer holds."""
    if 200 <= status < 300:
        return SendResult(Outcome.SENT, status, message_id=message_id_from(body))
    detail = f"HTTP {status}: {body[:DETAIL_LENGTH]}".strip()
    if status in (401, 403):
        return SendResult(Outcome.SENDER_DOWN, status, detail)
    if 400 <= status < 500 and status not in (408, 429):
        return SendResult(Outcome.FAILED, status, detail)
    return SendResult(Outcome.RETRY, status, detail, parse_retry_after(header(headers, "Retry-After")))


def unanswered(exc: Exception) -> SendResult:
    """No HTTP answer: worth a retry. After a timeout the gateway may have
    taken the message; the retry carries the same idempotency key."""
    if isinstance(exc, EngineTimeout):
        return SendResult(Outcome.RETRY, detail="timed out")
    return SendResult(Outcome.RETRY, detail=f"connection failed: {exc}")


def message_id_from(body: str) -> str | None:
    """The gateway's message id (WhatsApp's `messages[0].id`), if the body has one."""
    answer = parsed(body)
    try:
        return message_id(answer["messages"][0]["id"])
    except (KeyError, IndexError, TypeError):
        return None


class HttpSender:
    """One gateway over one HTTP engine: the provider builds each request and
    reads each answer; the engine carries them (on threads or a loop)."""

    def __init__(self, engine: HttpEngine, provider):
        self.engine = engine
        self.provider = provider
        self.url = provider.url
        self.name = provider.name

    def probe(self) -> None:
        try:
            answer = self.engine.get()
        except (EngineTimeout, EngineError) as exc:
            raise ServiceUnavailable(f"WhatsApp endpoint {self.url} is unreachable: {exc}") from None
        if answer.status in (401, 403):
            raise ConfigError(f"WhatsApp endpoint {self.url} refused our credentials (HTTP {answer.status})")

    async def send(self, message: Message) -> SendResult:
        try:
            answer = await self.engine.post(*self.provider.request(message))
        except (EngineTimeout, EngineError) as exc:
            return unanswered(exc)
        return self.provider.read(answer.status, answer.headers, answer.text)

    def close(self) -> None:
        self.engine.close()
