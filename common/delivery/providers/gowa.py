"""go-whatsapp-web-multidevice: POST {url}/send/message with HTTP Basic auth.

A 429 WA_REACHOUT_TIMELOCK is WhatsApp refusing new chats from this number
for a while: the row waits a long time instead of being tried again soon.
"""

import base64

from common.delivery.providers._json import dumps
from common.delivery.providers._names import address
from common.delivery.providers._text import Content, content_of
from common.delivery.sender import Message, Outcome, SendResult, classify, message_id, parsed
from common.errors import ConfigError

TIMELOCK_DELAY = 3600.0  # seconds a timelocked row waits before its next try


class Gowa:
    def __init__(self, base_url: str, username: str | None, password: str | None, content: Content):
        self.url = f"{base_url.rstrip('/')}/send/message"
        self.name = f"gowa:{username or '-'}@{address(base_url)}"
        self.headers = {"Content-Type": "application/json"}
        if username:
            credentials = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {credentials}"
        self.content = content

    def request(self, message: Message) -> tuple[bytes, dict]:
        body = {"phone": f"{message.phone}@s.whatsapp.net", "message": self.content.text_for(message.params)}
        return dumps(body), {"Idempotency-Key": message.idempotency_key}

    @staticmethod
    def read(status: int, headers, text: str) -> SendResult:
        answer = parsed(text)
        code = answer.get("code") if isinstance(answer, dict) else None
        if status == 429 and code == "WA_REACHOUT_TIMELOCK":
            return SendResult(Outcome.RETRY, status, f"HTTP 429: {code}", retry_after=TIMELOCK_DELAY, per_row=True)
        result = classify(status, headers, text)
        if result.outcome is not Outcome.SENT:
            return result
        if code not in (None, "SUCCESS"):
            return SendResult(Outcome.RETRY, status, f"HTTP {status} but code {code}")
        results = answer.get("results") if isinstance(answer, dict) else None
        return SendResult(
            Outcome.SENT,
            status,
            message_id=message_id(results.get("message_id")) if isinstance(results, dict) else None,
        )


def build(settings) -> Gowa:
    if not settings.text:
        raise ConfigError("WHATSAPP_PROVIDER=gowa sends text messages: set WHATSAPP_TEXT")
    return Gowa(settings.whatsapp_url, settings.gowa_username, settings.gowa_password, content_of(settings))
