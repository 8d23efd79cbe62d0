"""What gateways tell us after a send: receipts and replies, from their webhooks.

Each dialect checks a request's signature against its secret and reads its
body into two kinds of event: a `Receipt` (a message we sent is now sent,
delivered, read or failed) and a `Reply` (someone wrote to us, perhaps STOP).
Anything else in a body is ignored. Reading never raises: a body that is not
the dialect's JSON reads as None, and the web service answers 400.
"""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from common.delivery.providers._json import message_id, parsed

Header = Callable[[str], str | None]  # a request's header by name, None when it has none

# A row's furthest news, in order; failed (after acceptance) is final.
STATUSES = ("sent", "delivered", "read", "failed")
RANK = {status: rank for rank, status in enumerate(STATUSES, start=1)}
TEXT_LENGTH = 255  # of a reply kept for opt-out matching and the record
EARLIEST, LATEST = 946_684_800, 2_147_483_647  # 2000-01-01 and the last second a TIMESTAMP holds
STOP_BUTTON = "STOP PROMOTIONS"  # the marketing templates' opt-out quick reply, whatever the keywords


@dataclass(frozen=True)
class Receipt:
    message_id: str
    status: str  # one of STATUSES
    event_at: float | None = None  # unix seconds, as the gateway stamped it
    error_code: str | None = None
    error_title: str | None = None


@dataclass(frozen=True)
class Reply:
    phone: str  # the sender's number, E.164 digits as the gateway gives it
    text: str
    message_id: str | None = None
    event_at: float | None = None
    button: str | None = None  # a quick-reply button's payload, when that is what was pressed


@dataclass(frozen=True)
class Events:
    receipts: list[Receipt]
    replies: list[Reply]


def hmac_hex(secret: str, body: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def verdict(expected: str, given: str | None) -> str:
    """'ok', 'missing' or 'wrong', comparing in constant time."""
    if not given:
        return "missing"
    return "ok" if hmac.compare_digest(expected.encode(), given.strip().encode()) else "wrong"


def hub_signature(secret: str, header: Header, body: bytes) -> str:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, as the
    Cloud API and gowa sign."""
    return verdict(f"sha256={hmac_hex(secret, body)}", header("X-Hub-Signature-256"))


def timestamp(value) -> float | None:
    """Unix seconds from a gateway's stamp (seconds or milliseconds, number or
    string), or None for one a TIMESTAMP column cannot hold (1970 to 2038)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    seconds = number / 1000 if number > 1e11 else number
    return seconds if EARLIEST <= seconds <= LATEST else None


def text_of(value, length: int = TEXT_LENGTH) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return value[:length] if isinstance(value, str) and value else None


def digits(value) -> str | None:
    """A phone or WhatsApp id (628...@c.us, 628...@s.whatsapp.net, +62 8...) as E.164 digits."""
    text = text_of(value)
    if text is None:
        return None
    number = "".join(ch for ch in text.split("@")[0].split(":")[0] if ch.isdigit())
    return number if 6 <= len(number) <= 15 else None


def listed(value) -> list:
    return value if isinstance(value, list) else []


def mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


class Meta:
    """The Cloud API: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
    body keyed with the app secret>`; statuses and messages under
    entry[].changes[].value."""

    name = "meta"

    verify = staticmethod(hub_signature)

    def read(self, body: bytes) -> Events | None:
        document = parsed(body.decode("utf-8", "replace"))
        if not isinstance(document, dict):
            return None
        receipts, replies = [], []
        for entry in listed(document.get("entry")):
            for change in listed(mapping(entry).get("changes")):
                value = mapping(mapping(change).get("value"))
                receipts += [r for r in map(self.receipt, listed(value.get("statuses"))) if r]
                replies += [r for r in map(self.reply, listed(value.get("messages"))) if r]
        return Events(receipts, replies)

    @staticmethod
    def receipt(status) -> Receipt | None:
        status = mapping(status)
        sent_id, state = message_id(status.get("id")), status.get("status")
        if sent_id is None or not isinstance(state, str) or state not in RANK:
            return None
        error = mapping((listed(status.get("errors")) or [None])[0])
        return Receipt(
            sent_id,
            state,
            timestamp(status.get("timestamp")),
            text_of(error.get("code")),
            text_of(error.get("title") or error.get("message")),
        )

    @staticmethod
    def reply(message) -> Reply | None:
        message = mapping(message)
        phone = digits(message.get("from"))
        if phone is None:
            return None
        kind = message.get("type")
        button = None
        if kind == "text":
            text = text_of(mapping(message.get("text")).get("body"))
        elif kind == "button":  # a template's quick-reply button
            pressed = mapping(message.get("button"))
            text, button = text_of(pressed.get("text")), text_of(pressed.get("payload"))
        elif kind == "interactive":
            interactive = mapping(message.get("interactive"))
            pressed = mapping(interactive.get("button_reply") or interactive.get("list_reply"))
            text, button = text_of(pressed.get("title")), text_of(pressed.get("id"))
        else:
            text = None
        return Reply(phone, text or "", message_id(message.get("id")), timestamp(message.get("timestamp")), button)


def words(text: str | None) -> str:
    """A reply as keywords are compared: case and spacing do not count."""
    return " ".join((text or "").split()).upper()


@dataclass(frozen=True)
class OptOutRules:
    """Which replies take a phone off the campaign (STOP) or put it back (START).

    A reply matches when its whole text is one of the keywords, or when it is
    a button (a template's "Stop promotions" quick reply) whose payload or
    text is one: "please stop the spam" is a message for a person, not an
    opt-out."""

    stop: frozenset[str] = frozenset({"STOP", "UNSUBSCRIBE", "BERHENTI"})
    start: frozenset[str] = frozenset({"START"})

    @classmethod
    def parse(cls, stop: str | None, start: str | None) -> "OptOutRules":
        """From comma-separated lists (OPT_OUT_KEYWORDS, OPT_IN_KEYWORDS); None keeps the default."""
        default = cls()

        def keywords(text: str | None, fallback: frozenset[str]) -> frozenset[str]:
            return fallback if text is None else frozenset(filter(None, map(words, text.split(","))))

        return cls(keywords(stop, default.stop), keywords(start, default.start))

    def decide(self, reply: Reply) -> str | None:
        """'out', 'in' or None."""
        said = {words(reply.text), words(reply.button)} - {""}
        if said & self.stop or (reply.button is not None and STOP_BUTTON in said):
            return "out"
        if said & self.start:
            return "in"
        return None


class Waha:
    """WAHA: `X-Webhook-Hmac: <hex HMAC-SHA512 of the raw body>` with
    `X-Webhook-Hmac-Algorithm: sha512`, keyed with the webhook's hmac.key;
    `message.ack` events (ack 1 server, 2 device, 3 read, 4 played, -1
    error) and `message` events. Messages are named by stanza id, the last
    part of `true_<chat>_<stanza id>` (see providers.waha.sent_id)."""

    name = "waha"
    ACKS = {1: "sent", 2: "delivered", 3: "read", 4: "read", -1: "failed"}

    def verify(self, secret: str, header: Header, body: bytes) -> str:
        algorithm = (header("X-Webhook-Hmac-Algorithm") or "sha512").strip().lower()
        if algorithm != "sha512":
            return "wrong"
        return verdict(hmac_hex(secret, body, hashlib.sha512), header("X-Webhook-Hmac"))

    def read(self, body: bytes) -> Events | None:
        document = parsed(body.decode("utf-8", "replace"))
        if not isinstance(document, dict):
            return None
        event, payload = document.get("event"), mapping(document.get("payload"))
        if event == "message.ack" and payload.get("fromMe") is True:
            receipt = self.receipt(payload)
            return Events([receipt] if receipt else [], [])
        if event in ("message", "message.any") and payload.get("fromMe") is False:
            phone = digits(payload.get("from"))
            if phone:
                reply = Reply(
                    phone,
                    text_of(payload.get("body")) or "",
                    stanza(payload.get("id")),
                    timestamp(payload.get("timestamp")),
                )
                return Events([], [reply])
        return Events([], [])

    def receipt(self, payload: dict) -> Receipt | None:
        sent_id, ack = stanza(payload.get("id")), payload.get("ack")
        status = self.ACKS.get(ack) if isinstance(ack, int) and not isinstance(ack, bool) else None
        if sent_id is None or status is None:
            return None
        title = "WAHA reported an error for this message" if status == "failed" else None
        return Receipt(sent_id, status, timestamp(payload.get("timestamp")), None, title)


class Gowa:
    """go-whatsapp-web-multidevice: `X-Hub-Signature-256: sha256=<hex
    HMAC-SHA256 of the raw body>` keyed with its WHATSAPP_WEBHOOK_SECRET;
    `message.ack` events (receipt_type delivered or read, for several ids at
    once) and `message` events. It reports no failure after acceptance."""

    name = "gowa"
    RECEIPTS = {"delivered": "delivered", "read": "read", "played": "read"}

    verify = staticmethod(hub_signature)

    def read(self, body: bytes) -> Events | None:
        document = parsed(body.decode("utf-8", "replace"))
        if not isinstance(document, dict):
            return None
        event, payload = document.get("event"), mapping(document.get("payload"))
        if event == "message.ack":
            status = self.RECEIPTS.get(str(payload.get("receipt_type")))  # read-self: we read a message; not ours
            at = timestamp_of_iso(document.get("timestamp"))
            ids = [message_id(i) for i in listed(payload.get("ids"))]
            return Events([Receipt(i, status, at) for i in ids if i and status], [])
        if event == "message" and payload.get("is_from_me") is False:
            phone = digits(payload.get("from"))
            if phone:
                at = timestamp_of_iso(payload.get("timestamp"))
                return Events([], [Reply(phone, text_of(payload.get("body")) or "", message_id(payload.get("id")), at)])
        return Events([], [])


def stanza(value) -> str | None:
    """WAHA's `true_<chat>_<stanza id>` -> the stanza id; a bare stanza id stays as it is."""
    serialized = message_id(value)
    return serialized.rsplit("_", 1)[-1] or None if serialized else None


def timestamp_of_iso(value) -> float | None:
    """gowa's RFC 3339 stamps."""
    if not isinstance(value, str):
        return None
    try:
        return timestamp(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except (ValueError, OverflowError, OSError):
        return None


DIALECTS = {dialect.name: dialect for dialect in (Meta(), Waha(), Gowa())}
