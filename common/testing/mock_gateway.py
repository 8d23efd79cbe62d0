"""A stand-in WhatsApp gateway for tests, the demo and benchmarks.

It answers sends the way the Cloud API does, can be told to be slow, to fail or to
hang, and counts deliveries per idempotency key, so a test can prove that nothing
was sent twice. Use ``MockWhatsApp`` in-process, or run ``python -m common.mock_whatsapp``.

Given a `receipts_url`, it also hears back like a gateway: after each accepted
send it posts signed webhooks to that URL (delivered, then read, or failed,
and now and then a STOP reply) in the send's dialect, from one scheduler
thread and a few posting threads, however many messages are waiting.
"""

import heapq
import itertools
import json
import logging
import random
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import requests

from common.testing.dialects import Cloud, Gowa, Inbound, Status, dialect_of, parse_body

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_mock/"
MAX_DUPLICATE_KEYS = 100
MAX_BODIES = 10_000  # accepted request bodies kept for tests to read, by idempotency key
# serve_forever looks for a shutdown request this often; its 0.5 s default would
# make every stop(), and so every test, half a second slower.
POLL_SECONDS = 0.05
RESET = object()  # answer to a send: reset the connection instead of replying
RECEIPT_POSTERS = 4  # threads posting webhooks back; their requests are the only concurrency
RECEIPT_TIMEOUT = 5.0  # seconds for one webhook post
RECEIPT_RETRY_WAIT = 0.5  # seconds before the first retry of a refused webhook; doubled after each
RECEIPT_BATCH = 1000  # due events taken off the schedule at once
SECRETS = ("token", "receipts_secret")  # shown as *** in logs

# name: (type, lowest, highest) of each numeric behaviour setting.
_LIMITS = {
    "latency_ms": (float, 0, float("inf")),
    "fail_rate": (float, 0, 1),
    "fail_status": (int, 400, 599),
    "fail_first": (int, 0, float("inf")),
    "timeout_rate": (float, 0, 1),
    "hang_seconds": (float, 0, float("inf")),
    "reset_rate": (float, 0, 1),
    "trickle_seconds": (float, 0, float("inf")),
    "delivered_after": (float, 0, float("inf")),
    "read_after": (float, 0, float("inf")),
    "read_share": (float, 0, 1),
    "undelivered_share": (float, 0, 1),
    "stop_share": (float, 0, 1),
    "receipt_retries": (int, 0, 10),
}


@dataclass(frozen=True)
class Behaviour:
    """How the mock answers sends.

    It is replaced whole on every change, so one request always sees one
    consistent version without holding the lock.
    """

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 500
    fail_first: int = 0
    retry_after: int | str | None = None  # sent verbatim: a test may send what a broken gateway does
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    reset_rate: float = 0.0  # share of sends answered by resetting the connection
    plain_body: bool = False  # answer with plain text / HTML instead of JSON, as some gateways do
    success_body: str | None = None  # the body of every 2xx instead of the dialect's: odd gateways' answers
    trickle_seconds: float = 0.0  # spread each answer's body over this long, a byte at a time
    token: str | None = None
    # Webhooks back after each accepted send; none without receipts_url.
    receipts_url: str | None = None  # where to post them, e.g. http://127.0.0.1:8000/webhooks/meta
    receipts_secret: str | None = None  # signs them as the dialect does; unsigned without it
    delivered_after: float = 1.0  # seconds from the send to "delivered" (or "failed")
    read_after: float = 2.0  # seconds from "delivered" to "read"
    read_share: float = 0.6  # share of delivered messages that are read
    undelivered_share: float = 0.0  # share of accepted sends that fail later (Meta 131026, WAHA ack -1; gowa: silence)
    stop_share: float = 0.0  # share of recipients who reply STOP
    # A refused or failed webhook is posted again, as gateways do (Meta for
    # days); here up to this many times, 0.5 s, 1 s, 2 s ... apart.
    receipt_retries: int = 3

    def __post_init__(self):
        for name, (kind, lowest, highest) in _LIMITS.items():
            value = getattr(self, name)
            allowed = int if kind is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed) or not lowest <= value <= highest:
                raise ValueError(f"{name} must be {kind.__name__} from {lowest} to {highest}, got {value!r}")
        retry_after = self.retry_after
        if retry_after is not None and (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, (int, str))
            or isinstance(retry_after, int)
            and retry_after < 0
        ):
            raise ValueError(f"retry_after must be seconds or a header text, got {retry_after!r}")
        if self.success_body is not None and not isinstance(self.success_body, str):
            raise ValueError("success_body must be a string or null")
        if not isinstance(self.plain_body, bool):
            raise ValueError("plain_body must be true or false")
        for name in SECRETS:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value):
                raise ValueError(f"{name} must be a non-empty string or null")
        url = self.receipts_url
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError("receipts_url must be an http:// or https:// URL or null")


def _error(message, error_type="OAuthException", code=100):
    return {"error": {"message": message, "type": error_type, "code": code}}


class MockWhatsApp:
    """The mock gateway: an HTTP server on a background thread, and what it has recorded."""

    def __init__(self, host="127.0.0.1", port=0, **behaviour):
        self.behaviour = Behaviour(**behaviour)
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None  # serves _server; both are set or both None
        self._in_flight = 0
        self._receipts = ReceiptPoster()
        self._clear_records()

    def start(self):
        """Listen and serve on a daemon thread; returns self so it can be chained."""
        self._stopping.clear()
        self._receipts.start()
        self._server = server = _Server(self._address, self)
        self._thread = thread = threading.Thread(
            target=server.serve_forever, args=(POLL_SECONDS,), name="mock-whatsapp", daemon=True
        )
        thread.start()
        return self

    def stop(self):
        """Stop listening and drop open connections, waking requests that sleep or hang."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None
        self._receipts.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        """Base URL of the running server, with the real port when started on port 0."""
        if self._server is None:
            raise RuntimeError("the mock has no URL until it is started")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # as bound; the stubs also allow the bytes bind() takes
        return f"http://{host}:{port}"

    def config(self):
        """The current behaviour as a dict of setting name to value."""
        return asdict(self.behaviour)

    def configure(self, **changes):
        """Change some behaviour settings and return the full config; records are kept."""
        unknown = sorted(set(changes) - {field.name for field in fields(Behaviour)})
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        with self._lock:
            self.behaviour = replace(self.behaviour, **changes)
        shown = {name: "***" if name in SECRETS else value for name, value in changes.items()}
        logger.info("behaviour changed: %s", shown)
        return self.config()

    def reset(self):
        """Forget every recorded request, including the attempt counts fail_first uses."""
        with self._lock:
            self._clear_records()
        self._receipts.clear()

    def stats(self):
        """Counts of requests and deliveries, as served at GET /_mock/stats."""
        with self._lock:
            return {
                "requests": self._requests,
                "delivered": self._delivered,
                "unique": len(self._deliveries),
                "duplicates": self._delivered - len(self._deliveries),
                "duplicate_keys": list(self._duplicate_keys),
                "by_status": {str(status): count for status, count in self._by_status.items()},
                "hung": self._hung,
                "in_flight": self._in_flight,
                **self._receipts.stats(),
            }

    def deliveries(self):
        """Idempotency key -> number of 2xx answers given for it."""
        with self._lock:
            return dict(self._deliveries)

    def recipients(self):
        """Phone number ("to") -> number of 2xx answers given for it."""
        with self._lock:
            return dict(self._recipients)

    def trickled(self):
        """Idempotency key -> number of its 2xx answers whose body was trickled:
        a client with a deadline shorter than the trickle never read them, so
        the mock took a message whose answer never arrived."""
        with self._lock:
            return dict(self._trickled)

    def bodies(self):
        """Idempotency key -> the JSON body of the last send accepted for it (the first MAX_BODIES keys)."""
        with self._lock:
            return dict(self._bodies)

    def delivery_times(self):
        """time.monotonic() of each 2xx answer, in order: for measuring send rates."""
        with self._lock:
            return list(self._delivery_times)

    def _clear_records(self):
        self._requests = 0
        self._hung = 0
        self._delivered = 0
        self._by_status = {}
        self._attempts = {}
        self._deliveries = {}
        self._recipients = {}
        self._trickled = {}
        self._bodies = {}
        self._delivery_times = []
        self._duplicate_keys = []

    def _begin_send(self):
        with self._lock:
            self._requests += 1
            self._in_flight += 1

    def _end_send(self):
        with self._lock:
            self._in_flight -= 1

    def _answer_send(self, headers, body, dialect=Cloud):
        """Decide and record the answer to one send: (status, payload, headers,
        trickle seconds), RESET, or None to hang up."""
        behaviour = self.behaviour
        if behaviour.latency_ms:
            self._stopping.wait(behaviour.latency_ms / 1000)
        if not dialect.authorized(behaviour.token, headers):
            return self._record(behaviour, *dialect.auth_error)
        try:
            to = dialect.recipient(parse_body(body))
        except ValueError as exc:
            return self._record(behaviour, 400, dialect.bad_request(str(exc)))
        key = headers.get("Idempotency-Key") or f"to:{to}"
        with self._lock:
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        if random.random() < behaviour.reset_rate:
            return RESET
        if random.random() < behaviour.timeout_rate:
            with self._lock:
                self._hung += 1
            self._stopping.wait(behaviour.hang_seconds)
            return None
        if attempt <= behaviour.fail_first or random.random() < behaviour.fail_rate:
            status = behaviour.fail_status
            extra = {} if behaviour.retry_after is None else {"Retry-After": str(behaviour.retry_after)}
            error = dialect.failure(status)
            if behaviour.plain_body:
                error = f"<html><body><h1>{status}</h1></body></html>"
            return self._record(behaviour, status, error, extra)
        status, success = dialect.success(to)
        if behaviour.success_body is not None:
            success = behaviour.success_body
        elif behaviour.plain_body:
            success = "OK"
        elif behaviour.receipts_url:
            # Only an answer that named the message can have receipts the receiver matches.
            self._schedule_receipts(behaviour, dialect, dialect.sent_id(success), to)
        return self._record(behaviour, status, success, delivery=(key, to, body))

    def _schedule_receipts(self, behaviour, dialect, sent_id, to):
        """What this message's gateway will tell the receipts URL, and when."""
        url, secret = behaviour.receipts_url, behaviour.receipts_secret
        now = time.monotonic()
        delivered_at = now + behaviour.delivered_after
        events: list[tuple[float, Status | Inbound]] = []
        if random.random() < behaviour.undelivered_share:
            if dialect is not Gowa:  # gowa reports no failure after acceptance
                events.append((delivered_at, Status(sent_id, to, "failed")))
        else:
            events.append((delivered_at, Status(sent_id, to, "delivered")))
            if random.random() < behaviour.read_share:
                events.append((delivered_at + behaviour.read_after, Status(sent_id, to, "read")))
        if random.random() < behaviour.stop_share:
            events.append((delivered_at + behaviour.read_after, Inbound(to, "STOP")))
        for due, event in events:
            self._receipts.schedule(due, dialect, url, secret, behaviour.receipt_retries, event)

    def _record(self, behaviour, status, payload, headers=None, delivery=None):
        # The trickle is decided here, with the delivery, so the record of
        # trickled answers matches the answers that were trickled.
        trickle = behaviour.trickle_seconds
        with self._lock:
            self._by_status[status] = self._by_status.get(status, 0) + 1
            if delivery:
                key, to, body = delivery
                if key in self._bodies or len(self._bodies) < MAX_BODIES:
                    self._bodies[key] = json.loads(body)
                self._delivered += 1
                self._delivery_times.append(time.monotonic())
                count = self._deliveries[key] = self._deliveries.get(key, 0) + 1
                self._recipients[to] = self._recipients.get(to, 0) + 1
                if count == 2 and len(self._duplicate_keys) < MAX_DUPLICATE_KEYS:
                    self._duplicate_keys.append(key)
                if trickle:
                    self._trickled[key] = self._trickled.get(key, 0) + 1
        return status, payload, headers or {}, trickle


class ReceiptPoster:
    """Webhooks waiting for their time, and the threads that post them.

    One scheduler thread sleeps until the earliest is due, takes every due
    event, groups them by dialect and URL (the Cloud API batches statuses
    in one body) and hands the bodies to RECEIPT_POSTERS posting threads:
    a campaign of 100,000 messages makes 100,000 heap entries, not threads.
    A post that fails is retried by its thread (RECEIPT_RETRY_WAIT, doubling),
    then counted as failed and dropped; it never touches a send."""

    def __init__(self):
        self._heap: list = []
        self._order = itertools.count()  # ties on due time keep their order
        self._changed = threading.Condition()
        self._stopping = False
        self._halt = threading.Event()  # ends retry waits at stop()
        self._epoch = 0  # raised by clear(): posts taken before it count no more, nor retry
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clear_counts()

    def _clear_counts(self):
        self._scheduled = self._posted = self._failed = self._posts = self._in_hand = 0

    def start(self):
        with self._changed:
            if self._thread is not None:
                return
            self._stopping = False
            self._halt.clear()
            self._pool = ThreadPoolExecutor(RECEIPT_POSTERS, thread_name_prefix="mock-receipts-post")
            self._thread = threading.Thread(target=self._run, name="mock-receipts", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop posting; receipts not yet due are dropped."""
        with self._changed:
            thread, pool = self._thread, self._pool
            self._stopping = True
            self._halt.set()
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._changed:
            self._thread = self._pool = None
            self._heap.clear()

    def clear(self):
        with self._changed:
            self._heap.clear()
            self._clear_counts()
            self._epoch += 1

    def schedule(self, due: float, dialect, url: str, secret: str | None, retries: int, event) -> None:
        with self._changed:
            order = next(self._order)
            heapq.heappush(self._heap, (due, order, dialect, url, secret, retries, event))
            self._scheduled += 1
            if self._heap[0][1] == order:  # sooner than what the scheduler sleeps for
                self._changed.notify()

    def stats(self) -> dict:
        with self._changed:
            return {
                "receipts_scheduled": self._scheduled,
                "receipts_pending": len(self._heap) + self._in_hand,
                "receipts_posted": self._posted,
                "receipts_failed": self._failed,
                "receipt_posts": self._posts,
            }

    def _run(self):
        while True:
            with self._changed:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._changed.wait(wait)
                if self._stopping:
                    return
                now = time.monotonic()
                due: list[tuple] = []
                while self._heap and self._heap[0][0] <= now and len(due) < RECEIPT_BATCH:
                    due.append(heapq.heappop(self._heap))
                self._in_hand += len(due)
                epoch = self._epoch
            groups: dict = {}
            for _, _, dialect, url, secret, retries, event in due:
                groups.setdefault((dialect, url, secret, retries), []).append(event)
            pool = self._pool
            for (dialect, url, secret, retries), events in groups.items():
                try:
                    bodies = dialect.webhooks(events)
                except Exception:
                    logger.exception("could not write %s webhooks", dialect.name)
                    bodies = []
                written = sum(count for _, count in bodies)
                self._settle(epoch, len(events) - written, posted=0)  # events with no webhook (gowa's failures)
                for body, count in bodies:
                    assert pool is not None
                    try:
                        pool.submit(self._post, epoch, dialect, url, secret, retries, body, count)
                    except RuntimeError:  # shut down meanwhile
                        self._settle(epoch, count, posted=0)

    def _post(self, epoch, dialect, url, secret, retries, body, count):
        """Post one webhook body; again after a refusal, up to `retries` times."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        headers = {"Content-Type": "application/json", **dialect.sign(secret, body)}
        posts = 0
        while True:
            posts += 1
            try:
                answer = session.post(url, data=body, headers=headers, timeout=RECEIPT_TIMEOUT)
                ok = 200 <= answer.status_code < 300
                if not ok:
                    logger.debug("%s webhook to %s answered %s", dialect.name, url, answer.status_code)
            except requests.RequestException as exc:
                logger.debug("%s webhook to %s failed: %s", dialect.name, url, exc)
                ok = False
            if ok or posts > retries or self._halt.wait(RECEIPT_RETRY_WAIT * 2 ** (posts - 1)) or epoch != self._epoch:
                break
        self._settle(epoch, count, posted=count if ok else 0, failed=0 if ok else count, posts=posts)

    def _settle(self, epoch, taken, posted, failed=0, posts=0):
        with self._changed:
            if epoch != self._epoch:
                return  # cleared since it was taken
            self._in_hand = max(0, self._in_hand - taken)
            self._posted += posted
            self._failed += failed
            self._posts += posts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many pooled connections at once; the default backlog of 5
    # drops SYNs and stalls those clients for a one-second retransmit.
    request_queue_size = 256

    def __init__(self, address, mock):
        self.mock = mock
        self._connections = set()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.mock._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.mock._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        """End open connections; an idle keep-alive one would otherwise keep being served after stop()."""
        with self.mock._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # The client closed it first; there is nothing left to end.

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away", client_address[0])
        else:
            logger.exception("error while serving %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # the server that made this handler: its `mock` answers
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, the second waits for the
    # client's delayed ACK and every keep-alive request takes about 40 ms.
    disable_nagle_algorithm = True

    _views = {
        "/health": lambda mock: {"status": "ok"},
        CONTROL_PREFIX + "stats": MockWhatsApp.stats,
        CONTROL_PREFIX + "deliveries": MockWhatsApp.deliveries,
        CONTROL_PREFIX + "recipients": MockWhatsApp.recipients,
        CONTROL_PREFIX + "trickled": MockWhatsApp.trickled,
        CONTROL_PREFIX + "config": MockWhatsApp.config,
    }

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mock = self.server.mock
        path = self.path.split("?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            self._control(mock, path, body)
            return
        mock._begin_send()
        try:
            answer = mock._answer_send(self.headers, body, dialect_of(path))
            if answer is RESET:
                # Linger 0 makes close() send a RST: the client sees "connection reset".
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
            elif answer is None:
                self.close_connection = True
            else:
                self._reply(*answer)
        finally:
            mock._end_send()

    def do_GET(self):
        mock = self.server.mock
        path = self.path.split("?", 1)[0]
        view = self._views.get(path)
        if view:
            self._reply(200, view(mock))
        elif path.startswith(CONTROL_PREFIX):
            self._reply(404, _error(f"no mock endpoint {path}", "MockError"))
        elif not dialect_of(path).authorized(mock.behaviour.token, self.headers):
            # Clients probe with a GET at start-up, so bad credentials show before the first send.
            self._reply(*dialect_of(path).auth_error)
        else:
            message = f"Unsupported {self.command} request; messages are sent with POST."
            self._reply(405, _error(message, "GraphMethodException"), {"Allow": "POST"})

    do_HEAD = do_GET
    do_OPTIONS = do_GET

    def _control(self, mock, path, body):
        if path == CONTROL_PREFIX + "reset":
            mock.reset()
            self._reply(200, mock.stats())
        elif path == CONTROL_PREFIX + "config":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("config must be a JSON object")
                config = mock.configure(**changes)
            except ValueError as exc:
                self._reply(400, _error(str(exc), "MockConfigError"))
            else:
                self._reply(200, config)
        else:
            self._reply(404, _error(f"no mock endpoint {path}", "MockError"))

    def _reply(self, status, payload, headers=None, trickle=0.0):
        if isinstance(payload, str):
            body, content_type = payload.encode(), "text/html"
        else:
            body, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if not trickle:
            self.wfile.write(body)
            return
        for index in range(len(body)):
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            if self.server.mock._stopping.wait(trickle / len(body)):
                return

    def log_message(self, format, *args):
        logger.debug("%s " + format, self.client_address[0], *args)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=8080,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Delay before answering every send.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance a send is answered with --fail-status.",
)
@click.option(
    "--fail-status",
    type=click.IntRange(400, 599),
    default=500,
    show_default=True,
    help="Status of injected failures.",
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance a send gets no answer: the server waits --hang-seconds, then closes the connection.",
)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How long a timed-out send hangs.",
)
@click.option(
    "--reset-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance a send is answered by resetting the connection.",
)
@click.option(
    "--plain-body",
    is_flag=True,
    help="Answer with plain text or HTML bodies instead of JSON.",
)
@click.option(
    "--fail-first",
    type=click.IntRange(min=0),
    default=0,
    help="Fail the first N attempts of every idempotency key, then succeed.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0),
    default=None,
    help="Send Retry-After: SECONDS with injected failures.",
)
@click.option(
    "--token",
    envvar="MOCK_WHATSAPP_TOKEN",
    show_envvar=True,
    help="Require 'Authorization: Bearer TOKEN' on sends.",
)
@click.option(
    "--receipts-url",
    default=None,
    help="Post signed receipt and reply webhooks here after each accepted send, in the send's dialect"
    " (e.g. http://127.0.0.1:8000/webhooks/meta); unset: none.",
)
@click.option(
    "--receipts-secret",
    envvar="MOCK_RECEIPTS_SECRET",
    show_envvar=True,
    help="Sign the webhooks as the dialect does (Meta's app secret, WAHA's hmac key, gowa's webhook secret).",
)
@click.option(
    "--delivered-after",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds from a send to its delivered (or failed) receipt.",
)
@click.option(
    "--read-after",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds from delivered to read.",
)
@click.option(
    "--read-share",
    type=click.FloatRange(0, 1),
    default=0.6,
    show_default=True,
    help="Share of delivered messages that are read.",
)
@click.option(
    "--undelivered-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of accepted sends that fail afterwards (Meta error 131026, WAHA ack -1; gowa reports none).",
)
@click.option(
    "--stop-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of recipients who reply STOP.",
)
@click.option(
    "--receipt-retries",
    type=click.IntRange(0, 10),
    default=3,
    show_default=True,
    help="Post a refused webhook again up to this many times, 0.5 s, 1 s, 2 s ... apart, as gateways do.",
)
@click.option("--verbose", is_flag=True, help="Log every request.")
def main(host, port, verbose, token, receipts_secret, **behaviour):
    """Serve a mock WhatsApp endpoint until SIGTERM or SIGINT.

    \b
    Any POST outside /_mock/ is a send, identified by its Idempotency-Key
    header, or by "to:<to>" without one. With --receipts-url, each accepted
    send is followed by webhooks to that URL. Control endpoints:
      GET  /_mock/stats, /_mock/deliveries, /_mock/recipients, /_mock/trickled, /_mock/config
      POST /_mock/config (JSON of settings in snake_case), /_mock/reset
      GET  /health
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before any thread starts, so every thread inherits the mask and a stop
    # signal stays pending for sigwait here. With a Python handler instead, a signal
    # the kernel hands to a server thread never wakes the sleeping main thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    mock = MockWhatsApp(host, port, token=token or None, receipts_secret=receipts_secret or None, **behaviour).start()
    click.echo(f"mock WhatsApp endpoint listening on {mock.url}", err=True)
    signal.sigwait(stop_signals)
    mock.stop()
