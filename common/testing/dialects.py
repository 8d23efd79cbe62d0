"""How each gateway family speaks, for the mock endpoint: which paths are
its sends, how it checks credentials, where the recipient is in a send, and
the shapes of its answers. The mock's behaviour (latency, failures, hangs)
is the same for all of them.

`token` is the gateway's credential: a bearer token for the Cloud API and
the generic webhook, the X-Api-Key for WAHA, "user:password" for gowa.

Each dialect also writes the webhooks its gateway posts back after a send
(receipts and replies), signed the way it signs them, in the shapes
common/delivery/receipts.py reads (samples: tests/fixtures/webhooks/).
A `Status` names the message by the id the send's answer gave
(`sent_id`); `Inbound` is a reply from a recipient.
"""

import base64
import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime

UNDELIVERABLE = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}
META_BATCH = 100  # statuses in one Meta webhook body, when many are due at once


@dataclass(frozen=True)
class Status:
    message_id: str  # as the send's answer gave it
    to: str  # the recipient, as the send named it
    status: str  # "delivered", "read" or "failed"


@dataclass(frozen=True)
class Inbound:
    phone: str  # who writes to us
    text: str


def _digits(to: str) -> str:
    return "".join(ch for ch in to if ch.isdigit())


def _dumps(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _hub_signature(secret: str | None, body: bytes) -> dict:
    if not secret:
        return {}
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


class Cloud:
    """WhatsApp Cloud API, and the generic webhook (any other path)."""

    name = "cloud"
    auth_error = (401, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}})

    @staticmethod
    def authorized(token, headers) -> bool:
        return not token or headers.get("Authorization") == f"Bearer {token}"

    @staticmethod
    def recipient(message) -> str:
        to = message.get("to") if isinstance(message, dict) else None
        if not isinstance(to, str) or not to.strip():
            raise ValueError('(#100) The parameter "to" is required.')
        return to

    @staticmethod
    def bad_request(reason: str):
        return {"error": {"message": reason, "type": "OAuthException", "code": 100}}

    @staticmethod
    def failure(status: int):
        code = 130429 if status == 429 else 131000
        return {"error": {"message": f"Injected failure: HTTP {status}", "type": "MockInjectedFailure", "code": code}}

    @staticmethod
    def success(to: str):
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.{random.getrandbits(128):032x}"}],
        }

    @staticmethod
    def sent_id(answer) -> str | None:
        return answer["messages"][0]["id"]

    sign = staticmethod(_hub_signature)

    @staticmethod
    def webhooks(events: list) -> list[tuple[bytes, int]]:
        """Bodies of up to META_BATCH events each, as the Cloud API batches them, with their event counts."""
        bodies = []
        for start in range(0, len(events), META_BATCH):
            batch = events[start : start + META_BATCH]
            now = str(int(datetime.now(UTC).timestamp()))
            statuses, messages = [], []
            for event in batch:
                if isinstance(event, Status):
                    status: dict = {"id": event.message_id, "status": event.status, "timestamp": now}
                    status["recipient_id"] = _digits(event.to)
                    if event.status == "failed":
                        status["errors"] = [UNDELIVERABLE]
                    statuses.append(status)
                else:
                    messages.append(
                        {
                            "from": _digits(event.phone),
                            "id": f"wamid.{random.getrandbits(128):032x}",
                            "timestamp": now,
                            "type": "text",
                            "text": {"body": event.text},
                        }
                    )
            value: dict = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "123456789012345"}}
            if statuses:
                value["statuses"] = statuses
            if messages:
                value["messages"] = messages
            change = {"value": value, "field": "messages"}
            document = {"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [change]}]}
            bodies.append((_dumps(document), len(batch)))
        return bodies


class Waha:
    """WAHA: POST /api/sendText, X-Api-Key, chatId "<digits>@c.us"."""

    name = "waha"
    auth_error = (401, {"statusCode": 401, "message": "Unauthorized"})

    @staticmethod
    def authorized(token, headers) -> bool:
        return not token or headers.get("X-Api-Key") == token

    @staticmethod
    def recipient(message) -> str:
        chat = message.get("chatId") if isinstance(message, dict) else None
        if not isinstance(chat, str) or not chat.endswith("@c.us") or not isinstance(message.get("text"), str):
            raise ValueError('chatId "<number>@c.us" and text are required')
        return chat.removesuffix("@c.us")

    @staticmethod
    def bad_request(reason: str):
        return {"statusCode": 400, "message": reason}

    @staticmethod
    def failure(status: int):
        return {"statusCode": status, "message": f"Injected failure: HTTP {status}"}

    @staticmethod
    def success(to: str):
        serial = f"true_{to}@c.us_{random.getrandbits(64):016X}"
        return 201, {"id": {"fromMe": True, "remote": f"{to}@c.us", "_serialized": serial}, "body": "…"}

    @staticmethod
    def sent_id(answer) -> str | None:
        return answer["id"]["_serialized"]  # true_<phone>@c.us_<stanza id>, as its acks name the message

    @staticmethod
    def sign(secret: str | None, body: bytes) -> dict:
        if not secret:
            return {}
        digest = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        return {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}

    ACKS = {"delivered": (2, "DEVICE"), "read": (3, "READ"), "failed": (-1, "ERROR")}

    @classmethod
    def webhooks(cls, events: list) -> list[tuple[bytes, int]]:
        """One body per event, as WAHA posts them."""
        bodies = []
        for event in events:
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            envelope = {"id": f"evt_{random.getrandbits(96):024x}", "timestamp": now_ms, "session": "default"}
            if isinstance(event, Status):
                chat = f"{_digits(event.to)}@c.us"
                ack, ack_name = cls.ACKS[event.status]
                envelope["event"] = "message.ack"
                envelope["payload"] = {
                    "id": event.message_id,
                    "timestamp": now_ms // 1000,
                    "from": chat,
                    "to": chat,
                    "fromMe": True,
                    "ack": ack,
                    "ackName": ack_name,
                }
            else:
                chat = f"{_digits(event.phone)}@c.us"
                envelope["event"] = "message"
                envelope["payload"] = {
                    "id": f"false_{chat}_{random.getrandbits(80):020X}",
                    "timestamp": now_ms // 1000,
                    "from": chat,
                    "fromMe": False,
                    "body": event.text,
                    "hasMedia": False,
                }
            bodies.append((_dumps(envelope), 1))
        return bodies


class Gowa:
    """go-whatsapp-web-multidevice: POST /send/message, Basic auth, phone "<digits>@s.whatsapp.net"."""

    name = "gowa"
    auth_error = (401, {"code": "401", "message": "Unauthorized access", "results": None})

    @staticmethod
    def authorized(token, headers) -> bool:
        return not token or headers.get("Authorization") == "Basic " + base64.b64encode(token.encode()).decode()

    @staticmethod
    def recipient(message) -> str:
        phone = message.get("phone") if isinstance(message, dict) else None
        if not isinstance(phone, str) or not phone.endswith("@s.whatsapp.net"):
            raise ValueError('phone "<number>@s.whatsapp.net" is required')
        return phone.removesuffix("@s.whatsapp.net")

    @staticmethod
    def bad_request(reason: str):
        return {"code": "BAD_REQUEST", "message": reason, "results": None}

    @staticmethod
    def failure(status: int):
        code = "WA_REACHOUT_TIMELOCK" if status == 429 else "INTERNAL_SERVER_ERROR"
        return {"code": code, "message": f"Injected failure: HTTP {status}", "results": None}

    @staticmethod
    def success(to: str):
        return 200, {
            "code": "SUCCESS",
            "message": "Success",
            "results": {"message_id": f"3EB0{random.getrandbits(64):016X}", "status": "sent"},
        }

    @staticmethod
    def sent_id(answer) -> str | None:
        return answer["results"]["message_id"]

    sign = staticmethod(_hub_signature)

    @staticmethod
    def webhooks(events: list) -> list[tuple[bytes, int]]:
        """One body per event; gowa has no receipt for a failure after acceptance, so none is written."""
        bodies = []
        for event in events:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if isinstance(event, Status):
                if event.status == "failed":
                    continue
                chat = f"{_digits(event.to)}@s.whatsapp.net"
                document = {
                    "event": "message.ack",
                    "device_id": "6281100000000@s.whatsapp.net",
                    "timestamp": now,
                    "payload": {"ids": [event.message_id], "chat_id": chat, "from": chat, "receipt_type": event.status},
                }
            else:
                chat = f"{_digits(event.phone)}@s.whatsapp.net"
                document = {
                    "event": "message",
                    "device_id": "6281100000000@s.whatsapp.net",
                    "payload": {
                        "id": f"3A{random.getrandbits(72):018X}",
                        "timestamp": now,
                        "is_from_me": False,
                        "chat_id": chat,
                        "from": chat,
                        "body": event.text,
                    },
                }
            bodies.append((_dumps(document), 1))
        return bodies


def dialect_of(path: str):
    if path.endswith("/api/sendText"):
        return Waha
    if path.endswith("/send/message"):
        return Gowa
    return Cloud


def parse_body(body: bytes):
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ValueError(f"(#100) Request body is not valid JSON: {exc}") from None
