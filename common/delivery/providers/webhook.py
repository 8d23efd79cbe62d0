"""The generic webhook: the original system's JSON body to one URL, with an
optional bearer token; any 2xx is sent."""

from common.delivery.providers._json import dumps
from common.delivery.providers._names import address
from common.delivery.providers._text import Content, content_of
from common.delivery.sender import Message, classify


class Webhook:
    def __init__(self, url: str, token: str | None, content: Content, language: str):
        self.url = url
        self.name = f"webhook:{address(url)}"
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.content = content
        self.language = language

    def body(self, message: Message) -> dict:
        return {
            "messaging_product": "whatsapp",
            "to": message.phone,
            "type": "template",
            "template": {"name": self.content.template_for(message.params), "language": {"code": self.language}},
        }

    def request(self, message: Message) -> tuple[bytes, dict]:
        return dumps(self.body(message)), {"Idempotency-Key": message.idempotency_key}

    read = staticmethod(classify)


def build(settings) -> Webhook:
    return Webhook(settings.whatsapp_url, settings.whatsapp_token, content_of(settings), settings.language)
