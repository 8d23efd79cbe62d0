"""WAHA (WhatsApp HTTP API): POST {url}/api/sendText with X-Api-Key."""

from common.delivery.providers._json import dumps
from common.delivery.providers._names import address
from common.delivery.providers._text import Content, content_of
from common.delivery.receipts import stanza
from common.delivery.sender import Message, Outcome, SendResult, classify, parsed
from common.errors import ConfigError


class Waha:
    def __init__(self, base_url: str, api_key: str | None, session: str, content: Content):
        self.url = f"{base_url.rstrip('/')}/api/sendText"
        self.name = f"waha:{session}@{address(base_url)}"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["X-Api-Key"] = api_key
        self.session = session
        self.content = content

    def request(self, message: Message) -> tuple[bytes, dict]:
        body = {
            "session": self.session,
            "chatId": f"{message.phone}@c.us",
            "text": self.content.text_for(message.params),
        }
        return dumps(body), {"Idempotency-Key": message.idempotency_key}

    @staticmethod
    def read(status: int, headers, text: str) -> SendResult:
        result = classify(status, headers, text)
        if result.outcome is not Outcome.SENT:
            return result
        return SendResult(Outcome.SENT, status, message_id=sent_id(parsed(text)))


def sent_id(answer) -> str | None:
    """WAHA answers the sent message. Its id is a string (GOWS),
    {"_serialized": ...} (WEBJS), or, from NOWEB, only under key.id. We keep
    the stanza id, the part every engine and every receipt share: acks name
    the message `true_<chat>_<stanza id>`, which NOWEB's answer never does."""
    if not isinstance(answer, dict):
        return None
    value = answer.get("id")
    if isinstance(value, dict):
        value = value.get("_serialized")
    if value is None and isinstance(answer.get("key"), dict):
        value = answer["key"].get("id")
    return stanza(value)


def build(settings) -> Waha:
    if not settings.text:
        raise ConfigError("WHATSAPP_PROVIDER=waha sends text messages: set WHATSAPP_TEXT")
    return Waha(settings.whatsapp_url, settings.waha_api_key, settings.waha_session, content_of(settings))
