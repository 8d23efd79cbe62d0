"""`python -m common.web`: one small web service over the campaign: a
dashboard page, the status as JSON, pause and resume, re-sending failed
rows, an ingest API that adds pending rows, the opt-out list, an OpenAPI
document and a health check.

HTTP Basic auth guards everything but /health when WEB_USERNAME and
WEB_PASSWORD are set; without them it only listens on a loopback address.
Served by waitress (a production WSGI server) rather than Flask's
development server.
"""

import dataclasses
import hmac
import ipaddress
import logging
import signal
import sys
import threading
import time
from urllib.parse import urlsplit

import click
import redis
import waitress
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.cli import CONTENT_COLUMN_OPTIONS, PARTITIONS_OPTION, SERVICE_OPTIONS
from common.delivery.receipts import OptOutRules
from common.errors import CampaignError, ConfigError
from common.ops.openapi import MAX_OPT_OUT_LIST, OPT_OUT_LIST, document
from common.ops.snapshot import snapshot
from common.ops.status import resend_summary, undelivered_summary
from common.ops.webhooks import WEBHOOK_OPTIONS, WebhookSecrets, webhook_routes
from common.phones import InvalidPhone, check_region, normalise_phone
from common.process.receipt_writer import ReceiptWriter
from common.queue.inbox import Inbox
from common.queue.jobs import connect
from common.queue.pause import set_paused
from common.settings import Partition, check_redis_url, identifier, parse_database_url
from common.store.campaign import CampaignTable, KeyReused, RowRejected
from common.store.ingest import MAX_BATCH, BadMessage, IngestRules, parse_body, parse_messages, request_key
from common.store.receipts import ReceiptStore

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes: 10,000 short messages fit; raise WEB_MAX_BODY for bigger batches


class SharedSnapshot:
    """The status snapshot, shared by every dashboard and API client of this
    process. Counting a big table's rows takes time (about 0.3 s per million
    rows here), so several browsers refreshing every few seconds must not
    each start a count: the snapshot is recounted at most every `min_age`
    seconds, or every `cost_factor` times as long as the last count took,
    which keeps the counting to a tenth of one MySQL core however big the
    table. Pausing, resuming, re-sending and ingesting clear it, so their
    effect shows."""

    def __init__(self, compute, min_age: float = 2.0, cost_factor: float = 10.0):
        self.compute = compute
        self.min_age = min_age
        self.cost_factor = cost_factor
        self.lock = threading.Lock()  # one count at a time; the others wait for it and share it
        self.value: dict | None = None
        self.expires = 0.0

    def get(self) -> dict:
        with self.lock:
            if self.value is None or time.monotonic() >= self.expires:
                started = time.monotonic()
                self.value = self.compute()
                took = time.monotonic() - started
                self.expires = time.monotonic() + max(self.min_age, self.cost_factor * took)
            return self.value

    def clear(self) -> None:
        with self.lock:
            self.value = None


class Web:
    """What the routes need: the table (a connection per server thread), Redis,
    and the campaign's settings."""

    def __init__(self, open_table, client: redis.Redis, prefix: str, of: int, rules: IngestRules):
        self.open_table = open_table
        self.local = threading.local()
        self.client = client
        self.prefix = prefix
        self.of = of
        self.rules = rules  # what ingested messages are checked against (columns are read per request)
        self.status = SharedSnapshot(lambda: snapshot(self.table, self.client, self.prefix, self.of))

    @property
    def table(self) -> CampaignTable:
        if not hasattr(self.local, "table"):
            self.local.table = self.open_table()
        return self.local.table


def create_app(web: Web, credentials: tuple[str, str] | None, secrets: WebhookSecrets | None = None) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(webhook_routes(secrets or WebhookSecrets(), Inbox(web.client, web.prefix)))

    @app.before_request
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

    @app.errorhandler(CampaignError)
    def unavailable(exc):
        return jsonify(error=str(exc)), 503

    @app.errorhandler(BadMessage)
    def bad_request(exc):
        return jsonify(error=str(exc)), 400

    @app.get("/")
    def dashboard():
        """One static page; its script reads /api/status every few seconds."""
        return app.send_static_file("dashboard.html")

    @app.get("/health")
    def health():
        """Cheap, and without details: it needs no credentials."""
        checks = {}
        try:
            web.table.ping()
            checks["mysql"] = "ok"
        except CampaignError:
            checks["mysql"] = "unreachable"
        try:
            web.client.ping()
            checks["redis"] = "ok"
        except redis.RedisError:
            checks["redis"] = "unreachable"
        healthy = all(value == "ok" for value in checks.values())
        return jsonify(status="ok" if healthy else "degraded", **checks), 200 if healthy else 503

    @app.get("/api/status")
    def status():
        return jsonify(web.status.get())

    @app.post("/api/messages")
    def messages():
        body = parse_body(request.get_data())
        rules = dataclasses.replace(web.rules, columns=web.table.message_columns())
        rows = parse_messages(body, rules)
        key = request_key(request.headers.get("Idempotency-Key"), body)
        try:
            ids, replayed = web.table.insert_pending(rows, key)
        except KeyReused as exc:
            return jsonify(error=str(exc)), 422
        except RowRejected as exc:
            return jsonify(error=str(exc)), 400
        if replayed:
            log.info("a request repeated its Idempotency-Key: answered with the first one's %d ids", len(ids))
            return jsonify(status="queued", ids=ids), 202, {"Idempotent-Replayed": "true"}
        web.status.clear()
        log.info("added %d pending rows through the API", len(ids))
        return jsonify(status="queued", ids=ids), 202

    def steer(paused: bool):
        usage = f'send {{}} or {{"partition": K}} with K a whole number from 0 to {web.of - 1}'
        partition = partition_field(body_fields({"partition"}, usage), web.of, usage)
        try:
            set_paused(web.client, web.prefix, partition, paused)
        except redis.RedisError as exc:
            return jsonify(error=f"Redis is unreachable: {exc}"), 503
        web.status.clear()
        return jsonify(paused=paused, partition=None if partition is None else str(partition))

    @app.post("/api/pause")
    def pause():
        return steer(True)

    @app.post("/api/resume")
    def resume():
        return steer(False)

    @app.post("/api/resend")
    def resend():
        """Failed rows (or, with "undelivered", sent rows whose message failed
        after acceptance) back to pending, each to go out with a new idempotency key."""
        usage = (
            f'send {{}} (every failed row), or {{"reason": "text", "partition": K}} (either or both), '
            f'or {{"undelivered": true}} (sent rows whose message failed after acceptance, optionally with '
            f'"partition") with K a whole number from 0 to {web.of - 1}'
        )
        body = body_fields({"reason", "partition", "undelivered"}, usage)
        reason, undelivered = body.get("reason"), body.get("undelivered")
        if reason is not None and not isinstance(reason, str):
            raise BadMessage(usage)
        if (undelivered is not None and not isinstance(undelivered, bool)) or (undelivered and reason):
            raise BadMessage(usage)
        partition = partition_field(body, web.of, usage)
        where = (partition.index, partition.of) if partition else None
        if undelivered:
            count = ReceiptStore(web.table).resend_undelivered(where)
            summary = undelivered_summary(count, partition)
        else:
            count = web.table.resend_failed(reason, where)
            summary = resend_summary(count, reason, partition)
        web.status.clear()
        log.info("%s (through the API)", summary)
        return jsonify(resent=count)

    @app.get("/api/optouts")
    def optouts():
        """The latest phones on the opt-out list (in full: this is the list's
        own admin API), and how many there are."""
        raw = request.args.get("limit", str(OPT_OUT_LIST))
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_OPT_OUT_LIST):
            raise BadMessage(f"limit must be a whole number from 1 to {MAX_OPT_OUT_LIST:,}")
        store = ReceiptStore(web.table)
        return jsonify(total=store.opt_out_count(), optouts=store.opt_outs(int(raw)))

    @app.post("/api/optouts")
    def opt_out():
        """Add phones to the opt-out list, all or none (source "api")."""
        usage = (
            f'send {{"phones": ["+62 812...", ...], "reason": "text"}}: 1 to {MAX_BATCH:,} phones, '
            "and an optional reason"
        )
        body = body_fields({"phones", "reason"}, usage, required=frozenset({"phones"}))
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadMessage(usage)
        phones = phones_field(body, web.rules.default_region, usage)
        added = ReceiptStore(web.table).opt_out(phones, reason or "added through the API", "api")
        log.info("%d phones added to the opt-out list through the API", added)
        return jsonify(added=added, already_listed=len(set(phones)) - added)

    @app.post("/api/optouts/remove")
    def opt_in():
        """Take phones off the opt-out list, all or none. A POST with a JSON
        body like every other change here (a DELETE's body has no defined
        meaning in HTTP, and proxies and clients may drop it)."""
        usage = f'send {{"phones": ["+62 812...", ...]}}: 1 to {MAX_BATCH:,} phones'
        body = body_fields({"phones"}, usage, required=frozenset({"phones"}))
        phones = phones_field(body, web.rules.default_region, usage)
        removed = ReceiptStore(web.table).opt_in(phones)
        log.info("%d phones taken off the opt-out list through the API", removed)
        return jsonify(removed=removed, not_listed=len(set(phones)) - removed)

    @app.get("/openapi.json")
    def openapi():
        return jsonify(document(web.of))

    @app.get("/metrics")
    def prometheus():
        """This process's Prometheus counters: webhook receipts by status, refused
        signatures, opt-outs by reply (the roles serve theirs on METRICS_PORT)."""
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    return app


def body_fields(names: set[str], usage: str, required: frozenset[str] = frozenset()) -> dict:
    """A steering POST's body: a JSON object with no field but `names` (no
    body at all is {}) and every one of `required`; anything else is a 400 saying `usage`."""
    raw = request.get_data()
    body = parse_body(raw) if raw else {}
    if not isinstance(body, dict) or not set(body) <= names or not required <= set(body):
        raise BadMessage(usage)
    return body


def phones_field(body: dict, region: str | None, usage: str) -> list[str]:
    """The body's "phones", each as E.164 digits; one that is not a phone is a
    400 naming its place in the list, and nothing is changed."""
    phones = body.get("phones")
    if not isinstance(phones, list) or not 1 <= len(phones) <= MAX_BATCH or not all(isinstance(p, str) for p in phones):
        raise BadMessage(usage)
    normalised = []
    for number, raw in enumerate(phones):
        try:
            normalised.append(normalise_phone(raw, region))
        except InvalidPhone as exc:
            raise BadMessage(f"phone {number}: {exc}; nothing was changed") from None
    return normalised


def partition_field(body: dict, of: int, usage: str) -> Partition | None:
    """The body's "partition": None (or absent) for the whole campaign, else K of `of`."""
    index = body.get("partition")
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < of:
        raise BadMessage(usage)
    return Partition(index, of)


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
    log.info("listening on http://%s:%s", host, server.effective_port)
    signal.signal(signal.SIGTERM, stop)
    writer.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        writer.stop()


for _option in reversed(SERVICE_OPTIONS + CONTENT_COLUMN_OPTIONS + WEBHOOK_OPTIONS):
    main = _option(main)
