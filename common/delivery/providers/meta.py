"""WhatsApp Cloud API (Meta): POST {base}/{version}/{phone number id}/messages.

Errors are read by `error.code`, not by HTTP status alone: Meta answers
throttling, bad recipients and a paused template all with 4xx or 5xx.
"""

from common.delivery.providers._json import dumps
from common.delivery.providers._text import Content, content_of
from common.delivery.sender import (
    DETAIL_LENGTH,
    Message,
    Outcome,
    SendResult,
    classify,
    header,
    parse_retry_after,
    parsed,
)
from common.errors import ConfigError

RETRY_CODES = {130429, 4, 80007, 1, 2, 131000, 131016}
# Too many messages to this one recipient lately: only this row waits, the sender is fine.
PAIR_LIMIT_CODES = {131056}
PAIR_PAUSE = 60.0  # seconds at least before the row is tried again
ROW_FAILED_CODES = {131026, 100, 131047, 131030, 132000, 132001, 132012}
SENDER_DOWN_CODES = {190, 0, 131048, 131031, 368, 132015, 132016}


class Meta:
    def __init__(
        self,
        base_url: str,
        version: str,
        phone_number_id: str,
        token: str,
        content: Content,
        language: str,
        params: tuple[str, ...] = (),
    ):
        self.url = f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self.name = f"meta:{phone_number_id}"
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.content = content
        self.language = language
        self.params = params  # columns filling the template's body parameters, in order

    def body(self, message: Message) -> dict:
        # The row's own text, else its own template, else the campaign's text, else its template.
        text = self.content.own_text(message.params)
        if text is None and not self.content.own_template(message.params):
            text = self.content.text_for(message.params)
        if text is not None:
            return {"messaging_product": "whatsapp", "to": message.phone, "type": "text", "text": {"body": text}}
        template: dict = {"name": self.content.template_for(message.params), "language": {"code": self.language}}
        if self.params:
            values = [{"type": "text", "text": message.params.get(name, "")} for name in self.params]
            template["components"] = [{"type": "body", "parameters": values}]
        return {"messaging_product": "whatsapp", "to": message.phone, "type": "template", "template": template}

    def request(self, message: Message) -> tuple[bytes, dict]:
        return dumps(self.body(message)), {"Idempotency-Key": message.idempotency_key}

    @staticmethod
    def read(status: int, headers, text: str) -> SendResult:
        answer = parsed(text)
        error = answer.get("error") if isinstance(answer, dict) else None
        if 200 <= status < 300 or not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return classify(status, headers, text)
        code = error["code"]
        detail = f"HTTP {status}, Meta error {code}: {str(error.get('message', ''))[:DETAIL_LENGTH]}"
        if code in SENDER_DOWN_CODES:
            return SendResult(Outcome.SENDER_DOWN, status, detail)
        if code in ROW_FAILED_CODES:
            return SendResult(Outcome.FAILED, status, detail)
        if code in PAIR_LIMIT_CODES:
            retry_after = max(parse_retry_after(header(headers, "Retry-After")) or 0.0, PAIR_PAUSE)
            return SendResult(Outcome.RETRY, status, detail, retry_after, per_row=True)
        if code in RETRY_CODES:
            return SendResult(Outcome.RETRY, status, detail, parse_retry_after(header(headers, "Retry-After")))
        return classify(status, headers, text)


def build(settings) -> Meta:
    if not settings.meta_phone_number_id or not settings.whatsapp_token:
        raise ConfigError("WHATSAPP_PROVIDER=meta needs META_PHONE_NUMBER_ID and WHATSAPP_TOKEN")
    return Meta(
        settings.meta_base_url,
        settings.meta_api_version,
        settings.meta_phone_number_id,
        settings.whatsapp_token,
        content_of(settings),
        settings.language,
        settings.params,
    )
