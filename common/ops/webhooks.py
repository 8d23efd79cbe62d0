"""The gateways' webhooks: /webhooks/meta, /webhooks/waha, /webhooks/gowa.

A gateway cannot send our Basic auth, so these routes go without it: the
signature over the raw body, keyed with the secret the gateway was given, is
their lock. Without that secret configured a dialect's route is 404; a
request without a signature is 401, one with a wrong signature 403, and
neither stores anything. A verified body is put in the Redis inbox and
answered at once; the receipt writer takes it to MySQL in batches.

What a request gets is decided here, once, whichever server carries it: the
web service's Flask routes, or the lean receiver (common.ops.webhook_server)
for gateways that post one event per request by the thousand.
"""

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

import click
from flask import Blueprint, Response, jsonify, request

from common import metrics
from common.delivery.receipts import DIALECTS, Header
from common.errors import ServiceUnavailable
from common.queue.inbox import Inbox, entry_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSecrets:
    meta_app_secret: str | None = None
    meta_verify_token: str | None = None
    waha_key: str | None = None
    gowa_secret: str | None = None

    def for_dialect(self, name: str) -> str | None:
        return {"meta": self.meta_app_secret, "waha": self.waha_key, "gowa": self.gowa_secret}.get(name) or None


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a webhook request, and the inbox entry to keep before giving it."""

    status: int
    body: dict | str
    entry: str | None = None


NOT_FOUND = Answer(404, {"error": "not found"})


def subscription(secrets: WebhookSecrets, arg: Callable[[str], str | None]) -> Answer:
    """The Cloud API's check when the webhook is set up: echo the challenge if
    the verify token is ours."""
    token = secrets.meta_verify_token
    if not token:
        return NOT_FOUND
    given = arg("hub.verify_token") or ""
    if arg("hub.mode") != "subscribe" or not hmac.compare_digest(given.encode(), token.encode()):
        return Answer(403, {"error": "verify token does not match"})
    return Answer(200, arg("hub.challenge") or "")


def delivery(secrets: WebhookSecrets, name: str, header: Header, body: bytes, remote: str | None) -> Answer:
    """Verify a posted webhook and read its events into an inbox entry."""
    dialect, secret = DIALECTS.get(name), secrets.for_dialect(name)
    if dialect is None or secret is None:
        return NOT_FOUND
    verdict = dialect.verify(secret, header, body)
    if verdict != "ok":
        metrics.WEBHOOKS_REFUSED.labels(name, verdict).inc()
        log.warning("refused a %s webhook from %s: signature %s", name, remote, verdict)
        return Answer(401 if verdict == "missing" else 403, {"error": f"signature {verdict}"})
    events = dialect.read(body)
    if events is None:
        return Answer(400, {"error": f"not a {name} webhook body"})
    metrics.RECEIPTS.labels(name, "received").inc(len(events.receipts))
    entry = entry_of(name, events) if events.receipts or events.replies else None
    return Answer(200, {"receipts": len(events.receipts), "replies": len(events.replies)}, entry)


UNAVAILABLE = Answer(503, {"error": "Redis is unavailable; send it again"})


def webhook_routes(secrets: WebhookSecrets, inbox: Inbox) -> Blueprint:
    """The routes on the web service (Flask)."""
    routes = Blueprint("webhooks", __name__)

    def answered(answer: Answer):
        if isinstance(answer.body, str):
            return Response(answer.body, status=answer.status, mimetype="text/plain")
        return jsonify(answer.body), answer.status

    @routes.get("/webhooks/meta")
    def meta_subscription():
        return answered(subscription(secrets, request.args.get))

    @routes.post("/webhooks/<name>")
    def receive(name: str):
        answer = delivery(secrets, name, request.headers.get, request.get_data(cache=False), request.remote_addr)
        if answer.entry:
            try:
                inbox.keep([answer.entry])
            except ServiceUnavailable:
                return answered(UNAVAILABLE)  # the gateway sends it again
        return answered(answer)

    return routes


WEBHOOK_OPTIONS = [
    click.option(
        "--meta-app-secret",
        envvar="META_APP_SECRET",
        default=None,
        show_envvar=True,
        help="The Meta app's secret: signs the Cloud API's webhooks (X-Hub-Signature-256). "
        "Unset: /webhooks/meta is 404.",
    ),
    click.option(
        "--meta-verify-token",
        envvar="META_VERIFY_TOKEN",
        default=None,
        show_envvar=True,
        help="The token you gave Meta when subscribing the webhook; GET /webhooks/meta echoes the challenge for it.",
    ),
    click.option(
        "--waha-webhook-key",
        envvar="WAHA_WEBHOOK_KEY",
        default=None,
        show_envvar=True,
        help="The HMAC key of WAHA's webhook (its hmac.key). Unset: /webhooks/waha is 404.",
    ),
    click.option(
        "--gowa-webhook-secret",
        envvar="GOWA_WEBHOOK_SECRET",
        default=None,
        show_envvar=True,
        help="gowa's WHATSAPP_WEBHOOK_SECRET, which signs its webhooks. Unset: /webhooks/gowa is 404.",
    ),
]
