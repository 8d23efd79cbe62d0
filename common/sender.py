"""Sending one message over HTTP, and reading the answer into an outcome.

The consumer only knows the `Sender` interface, so another gateway or a
faster HTTP engine fits in behind it without touching the loops.
"""

import email.utils
import json
import enum
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import requests
from requests.adapters import HTTPAdapter

from common.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

DETAIL_LENGTH = 200


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # try again later: 5xx, 408, 429, timeouts, resets
    FAILED = "failed"  # this row can never be sent as it is
    SENDER_DOWN = "sender_down"  # the sender itself is refused (credentials): stop, keep the row


@dataclass(frozen=True)
class Message:
    row_id: int
    phone: str
    idempotency_key: str


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    message_id: str | None = None
    latency_ms: int | None = None


class Sender(Protocol):
    def probe(self) -> None:
        """Check at start-up that the endpoint answers and takes our credentials."""

    def send(self, message: Message) -> SendResult:
        """Send one message; never raises for a network or HTTP failure."""

    def close(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its two forms (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def classify(status: int, headers, body: str) -> SendResult:
    """Read an HTTP answer: 2xx sent; 401/403 the sender is refused; 408, 429
    and 5xx worth retrying; any other 4xx is permanent for this row."""
    if 200 <= status < 300:
        return SendResult(Outcome.SENT, status, message_id=message_id_from(body))
    detail = f"HTTP {status}: {body[:DETAIL_LENGTH]}".strip()
    if status in (401, 403):
        return SendResult(Outcome.SENDER_DOWN, status, detail)
    if status in (408, 429) or status >= 500:
        return SendResult(Outcome.RETRY, status, detail, parse_retry_after(headers.get("Retry-After")))
    return SendResult(Outcome.FAILED, status, detail)


def message_id_from(body: str) -> str | None:
    """The gateway's message id (WhatsApp's `messages[0].id`), if the body has one."""
    try:
        return json.loads(body)["messages"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class WebhookSender:
    """POSTs the original system's JSON body to one URL, over a pooled session."""

    def __init__(self, url: str, token: str | None, template: str, language: str, timeout: float, pool_size: int):
        self.url = url
        self.template = template
        self.language = language
        # Connect and read are bounded separately; both stay well inside a lease.
        self.timeout = (min(timeout, 3.0), timeout)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Content-Type"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def body(self, message: Message) -> dict:
        return {
            "messaging_product": "whatsapp",
            "to": message.phone,
            "type": "template",
            "template": {"name": self.template, "language": {"code": self.language}},
        }

    def probe(self) -> None:
        try:
            response = self.session.get(self.url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"WhatsApp endpoint {self.url} is unreachable: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ConfigError(f"WhatsApp endpoint {self.url} refused our credentials (HTTP {response.status_code})")

    def send(self, message: Message) -> SendResult:
        try:
            response = self.session.post(
                self.url,
                json=self.body(message),
                headers={"Idempotency-Key": message.idempotency_key},
                timeout=self.timeout,
            )
        except requests.Timeout:
            # The gateway may have taken it; the retry carries the same idempotency key.
            return SendResult(Outcome.RETRY, detail="timed out")
        except requests.RequestException as exc:
            return SendResult(Outcome.RETRY, detail=f"connection failed: {type(exc).__name__}")
        return classify(response.status_code, response.headers, response.text)

    def close(self) -> None:
        self.session.close()
