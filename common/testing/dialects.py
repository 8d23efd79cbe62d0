"""How each gateway family speaks, for the mock endpoint: which paths are
its sends, how it checks credentials, where the recipient is in a send, and
the shapes of its answers. The mock's behaviour (latency, failures, hangs)
is the same for all of them.

`token` is the gateway's credential: a bearer token for the Cloud API and
the generic webhook, the X-Api-Key for WAHA, "user:password" for gowa.
"""

import base64
import json
import random


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
