"""The web service's routes, in four groups over one `Web`: what it shows
(dashboard, status, health, its OpenAPI document, metrics), how it steers
the campaign (pause, resume, re-send), the ingest API that adds pending
rows, and the opt-out list. `common.ops.web` puts them behind its guard."""

import dataclasses
import logging
import threading

import redis
from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.errors import CampaignError
from common.ops.openapi import MAX_OPT_OUT_LIST, OPT_OUT_LIST, document
from common.ops.snapshot import Throttled, snapshot
from common.ops.status_text import resend_summary, undelivered_summary
from common.phones import InvalidPhone, normalise_phone
from common.queue.pause import set_paused
from common.settings import Partition
from common.store.campaign import CampaignTable, KeyReused, RowRejected
from common.store.ingest import MAX_BATCH, BadMessage, IngestRules, parse_body, parse_messages, request_key
from common.store.receipts import ReceiptStore

log = logging.getLogger(__name__)


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
        # Shared by every dashboard and API client of this process; pausing,
        # resuming, re-sending and ingesting clear it, so their effect shows.
        self.status = Throttled(lambda: snapshot(self.table, self.client, self.prefix, self.of), min_age=2.0)

    @property
    def table(self) -> CampaignTable:
        if not hasattr(self.local, "table"):
            self.local.table = self.open_table()
        return self.local.table


def view_routes(web: Web) -> Blueprint:
    """The dashboard, the status as JSON, health, the OpenAPI document and Prometheus metrics."""
    views = Blueprint("views", __name__)

    @views.get("/")
    def dashboard():
        """One static page; its script reads /api/status every few seconds."""
        return current_app.send_static_file("dashboard.html")

    @views.get("/health")
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

    @views.get("/api/status")
    def status():
        return jsonify(web.status())

    @views.get("/openapi.json")
    def openapi():
        return jsonify(document(web.of))

    @views.get("/metrics")
    def prometheus():
        """This process's Prometheus counters: webhook receipts by status, refused
        signatures, opt-outs by reply (the roles serve theirs on METRICS_PORT)."""
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    return views


def ingest_routes(web: Web) -> Blueprint:
    """POST /api/messages: new pending rows, all or none, once per Idempotency-Key."""
    ingest = Blueprint("ingest", __name__)

    @ingest.post("/api/messages")
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

    return ingest


def steering_routes(web: Web) -> Blueprint:
    """Pause and resume (all or one partition), and re-sending failed or undelivered rows."""
    steering = Blueprint("steering", __name__)

    def steer(paused: bool):
        usage = f'send {{}} or {{"partition": K}} with K a whole number from 0 to {web.of - 1}'
        partition = partition_field(body_fields({"partition"}, usage), web.of, usage)
        try:
            set_paused(web.client, web.prefix, partition, paused)
        except redis.RedisError as exc:
            return jsonify(error=f"Redis is unreachable: {exc}"), 503
        web.status.clear()
        return jsonify(paused=paused, partition=None if partition is None else str(partition))

    @steering.post("/api/pause")
    def pause():
        return steer(True)

    @steering.post("/api/resume")
    def resume():
        return steer(False)

    @steering.post("/api/resend")
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

    return steering


def opt_out_routes(web: Web) -> Blueprint:
    """The opt-out list: read it, add phones, take them off."""
    opt_outs = Blueprint("opt_outs", __name__)

    @opt_outs.get("/api/optouts")
    def optouts():
        """The latest phones on the opt-out list (in full: this is the list's
        own admin API), and how many there are."""
        raw = request.args.get("limit", str(OPT_OUT_LIST))
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_OPT_OUT_LIST):
            raise BadMessage(f"limit must be a whole number from 1 to {MAX_OPT_OUT_LIST:,}")
        store = ReceiptStore(web.table)
        return jsonify(total=store.opt_out_count(), optouts=store.opt_outs(int(raw)))

    @opt_outs.post("/api/optouts")
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

    @opt_outs.post("/api/optouts/remove")
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

    return opt_outs


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
