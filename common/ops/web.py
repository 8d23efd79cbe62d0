"""`python -m common.web`: one small web service over the campaign: a
dashboard page, the status as JSON, pause and resume, re-sending failed
rows, an ingest API that adds pending rows, the opt-out list, an OpenAPI
document and a health check.

The routes are in common/ops/api.py (and the signed webhooks in
common/ops/webhooks.py); this module puts them behind the guard and serves
them. HTTP Basic auth guards everything but /health when WEB_USERNAME and
WEB_PASSWORD are set; without them it only listens on a loopback address.
Served by waitress (a production WSGI server) rather than Flask's
development server.
"""

import hmac
import ipaddress
import logging
import signal
import sys
from urllib.parse import urlsplit

import click
import waitress
from flask import Flask, jsonify, request

from common.cli import CONTENT_COLUMN_OPTIONS, PARTITIONS_OPTION, SERVICE_OPTIONS
from common.delivery.receipts import OptOutRules
from common.errors import CampaignError, ConfigError
from common.ops.api import Web, ingest_routes, opt_out_routes, steering_routes, view_routes
from common.ops.webhooks import WEBHOOK_OPTIONS, WebhookSecrets, webhook_routes
from common.phones import check_region
from common.process.receipt_writer import ReceiptWriter
from common.queue.inbox import Inbox
from common.queue.jobs import connect
from common.settings import check_redis_url, identifier, parse_database_url
from common.store.campaign import CampaignTable
from common.store.ingest import BadMessage, IngestRules
from common.store.receipts import ReceiptStore

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes: 10,000 short messages fit; raise WEB_MAX_BODY for bigger batches


def create_app(web: Web, credentials: tuple[str, str] | None, secrets: WebhookSecrets | None = None) -> Flask:
    app = Flask(__name__)
    for routes in (view_routes(web), steering_routes(web), ingest_routes(web), opt_out_routes(web)):
        app.register_blueprint(routes)
    app.register_blueprint(webhook_routes(secrets or WebhookSecrets(), Inbox(web.client, web.prefix)))
    app.before_request(guard(credentials))

    @app.errorhandler(CampaignError)
    def unavailable(exc):
        return jsonify(error=str(exc)), 503

    @app.errorhandler(BadMessage)
    def bad_request(exc):
        return jsonify(error=str(exc)), 400

    return app


def guard(credentials: tuple[str, str] | None):
    """Before every request: JSON for a POST, and the credentials (or, without
    them, a loopback host name); /health and the signed webhooks go through."""

    def authenticate():
        if request.path.startswith("/webhooks/"):
            return None  # gateways cannot send our credentials: each request's signature is checked instead
        if request.method == "POST" and request.url_rule and not request.is_json:
            # A cross-site form can POST, but not with this content type. (No
            # url_rule: the route takes no POST, which is Flask's 404 or 405.)
            return jsonify(error="send JSON, with Content-Type: application/json"), 415
        if credentials is None:
            # Open only on loopback: refuse names a rebinding DNS could point here.
            if not is_loopback(urlsplit(f"//{request.host}").hostname or ""):
                return jsonify(error="without WEB_USERNAME/WEB_PASSWORD only requests to localhost are served"), 403
            return None
        if request.path == "/health":
            return None
        auth = request.authorization
        given = (auth.username or "", auth.password or "") if auth and auth.type == "basic" else ("", "")
        if all(hmac.compare_digest(a.encode(), b.encode()) for a, b in zip(given, credentials)):
            return None
        return jsonify(error="credentials needed"), 401, {"WWW-Authenticate": 'Basic realm="campaign"'}

    return authenticate


def stop(_signum, _frame):
    """SIGTERM ends the server like Ctrl-C; an ingest cut short adds nothing (one transaction)."""
    raise KeyboardInterrupt


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_for(host: str, username: str | None, password: str | None) -> tuple[str, str] | None:
    if bool(username) != bool(password):
        raise ConfigError("set both WEB_USERNAME and WEB_PASSWORD, or neither")
    if not username and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without WEB_USERNAME and WEB_PASSWORD "
            "(anyone on the network could steer the campaign); set them or use 127.0.0.1"
        )
    return (username, password) if username and password else None


@click.command(context_settings={"max_content_width": 100})
@click.option("--host", envvar="WEB_HOST", default="127.0.0.1", show_envvar=True, show_default=True)
@click.option(
    "--port", envvar="WEB_PORT", type=click.IntRange(0, 65535), default=8000, show_envvar=True, show_default=True
)
@click.option(
    "--username",
    envvar="WEB_USERNAME",
    default=None,
    show_envvar=True,
    help="HTTP Basic user for everything but /health; required off loopback.",
)
@click.option(
    "--password", envvar="WEB_PASSWORD", default=None, show_envvar=True, help="HTTP Basic password (never logged)."
)
@PARTITIONS_OPTION
@click.option("--template", envvar="WHATSAPP_TEMPLATE", default="hello_world", show_envvar=True, show_default=True)
@click.option("--text", envvar="WHATSAPP_TEXT", default=None, show_envvar=True)
@click.option(
    "--default-region",
    envvar="DEFAULT_REGION",
    default=None,
    show_envvar=True,
    help="Country of national phone numbers sent to /api/messages.",
)
@click.option(
    "--max-body",
    envvar="WEB_MAX_BODY",
    type=click.IntRange(min=1),
    default=MAX_BODY,
    show_envvar=True,
    show_default=True,
    help="Largest request body in bytes; a larger one gets 413 before it is read.",
)
@click.option(
    "--opt-out-keywords",
    envvar="OPT_OUT_KEYWORDS",
    default=None,
    show_envvar=True,
    help="Comma-separated replies that opt a phone out; case and spacing do not count."
    " [default: STOP,UNSUBSCRIBE,BERHENTI]",
)
@click.option(
    "--opt-in-keywords",
    envvar="OPT_IN_KEYWORDS",
    default=None,
    show_envvar=True,
    help="Comma-separated replies that take a phone off the opt-out list. [default: START]",
)
def main(
    host,
    port,
    username,
    password,
    of,
    template,
    text,
    default_region,
    max_body,
    template_column,
    text_column,
    meta_app_secret,
    meta_verify_token,
    waha_webhook_key,
    gowa_webhook_secret,
    opt_out_keywords,
    opt_in_keywords,
    **options,
):
    """Serve /api/status, /api/pause, /api/resume, /api/resend, /api/messages
    (ingest), /api/optouts, /openapi.json and /health for the campaign."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s web %(name)s: %(message)s"
    )
    try:
        auth = credentials_for(host, username, password)
        try:
            region = check_region(default_region)
        except ValueError as exc:
            raise ConfigError(f"DEFAULT_REGION: {exc}") from None
        target = parse_database_url(options["database_url"])

        def open_table() -> CampaignTable:
            return CampaignTable(target, options["table"], options["phone_column"], options["status_column"])

        first = open_table()
        first.check()
        first.check_ingest_log()
        for name, variable in ((template_column, "TEMPLATE_COLUMN"), (text_column, "TEXT_COLUMN")):
            if name:
                identifier(name, variable)
        rules = IngestRules(set(), template, text, template_column, text_column, region)
        web = Web(open_table, connect(check_redis_url(options["redis_url"])), options["key_prefix"], of, rules)
        secrets = WebhookSecrets(meta_app_secret, meta_verify_token, waha_webhook_key, gowa_webhook_secret)
        store = ReceiptStore(open_table())
        store.create_tables()
        writer = ReceiptWriter(
            Inbox(web.client, web.prefix), store, OptOutRules.parse(opt_out_keywords, opt_in_keywords)
        )
        # waitress itself refuses a body of max_request_body_size bytes or more,
        # by its Content-Length or as a chunked one arrives, so a big body is
        # never read whole; Flask's MAX_CONTENT_LENGTH would only see it after
        # waitress had spooled all of it. (types-waitress lacks create_server.)
        server = waitress.create_server(  # type: ignore[attr-defined]
            create_app(web, auth, secrets), host=host, port=port, threads=4, max_request_body_size=max_body + 1
        )
    except CampaignError as exc:
        click.echo(f"web: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"web: error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        sys.exit(2)
    signal.signal(signal.SIGTERM, stop)  # before the line that tells a supervisor we are up
    log.info("listening on http://%s:%s", host, server.effective_port)
    writer.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        writer.stop()


for _option in reversed(SERVICE_OPTIONS + CONTENT_COLUMN_OPTIONS + WEBHOOK_OPTIONS):
    main = _option(main)
