"""The gateways' webhooks: /webhooks/meta, /webhooks/waha, /webhooks/gowa.

A gateway cannot send our Basic auth, so these routes go without it: the
signature over the raw body, keyed with the secret the gateway was given, is
their lock. Without that secret configured a dialect's route is 404; a
request without a signature is 401, one with a wrong signature 403, and
neither stores anything. A verified body is put in the Redis inbox and
answered at once; the receipt writer takes it to MySQL in batches.
"""

import hmac
import logging
from dataclasses import dataclass

from flask import Blueprint, Response, abort, jsonify, request

from common import metrics
from common.delivery.receipts import DIALECTS
from common.queue.inbox import Inbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSecrets:
    meta_app_secret: str | None = None
    meta_verify_token: str | None = None
    waha_key: str | None = None
    gowa_secret: str | None = None

    def for_dialect(self, name: str) -> str | None:
        return {"meta": self.meta_app_secret, "waha": self.waha_key, "gowa": self.gowa_secret}.get(name) or None


def webhook_routes(secrets: WebhookSecrets, inbox: Inbox) -> Blueprint:
    routes = Blueprint("webhooks", __name__)

    @routes.get("/webhooks/meta")
    def meta_subscription():
        """The Cloud API's check when the webhook is set up: echo the challenge
        if the verify token is ours."""
        token = secrets.meta_verify_token
        if not token:
            abort(404)
        given = request.args.get("hub.verify_token", "")
        if request.args.get("hub.mode") != "subscribe" or not hmac.compare_digest(given.encode(), token.encode()):
            return jsonify(error="verify token does not match"), 403
        return Response(request.args.get("hub.challenge", ""), mimetype="text/plain")

    @routes.post("/webhooks/<name>")
    def receive(name: str):
        dialect, secret = DIALECTS.get(name), secrets.for_dialect(name)
        if dialect is None or secret is None:
            abort(404)
        body = request.get_data(cache=False)
        verdict = dialect.verify(secret, request.headers.get, body)
        if verdict != "ok":
            metrics.WEBHOOKS_REFUSED.labels(name, verdict).inc()
            log.warning("refused a %s webhook from %s: signature %s", name, request.remote_addr, verdict)
            return jsonify(error=f"signature {verdict}"), 401 if verdict == "missing" else 403
        events = dialect.read(body)
        if events is None:
            return jsonify(error=f"not a {name} webhook body"), 400
        if events.receipts or events.replies:
            inbox.put(name, events)  # ServiceUnavailable: 503, and the gateway sends it again
        metrics.RECEIPTS.labels(name, "received").inc(len(events.receipts))
        return jsonify(receipts=len(events.receipts), replies=len(events.replies))

    return routes
