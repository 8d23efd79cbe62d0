"""The mock WhatsApp gateway, driven over real HTTP as the consumers will drive it.

The ``mock`` fixture (tests/conftest.py) starts a fresh MockWhatsApp on a free port for each test.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from common.delivery.providers.waha import sent_id as waha_sent_id
from common.delivery.receipts import DIALECTS, OptOutRules

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PHONE = "628123456789"


def template_message(to=PHONE):
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }


def send(mock, to=PHONE, key=None, token=None, timeout=5):
    headers = {}
    if key:
        headers["Idempotency-Key"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{mock.url}/test_camp", json=template_message(to), headers=headers, timeout=timeout)


def wait_for_stats(mock, done, seconds=3):
    """Poll stats until done(stats) holds, since a hung request finishes after the client gives up."""
    deadline = time.monotonic() + seconds
    while not done(stats := mock.stats()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return stats


def test_send_gets_whatsapp_success_body_and_is_recorded(mock):
    response = send(mock, key="row-1")

    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": PHONE, "wa_id": PHONE}]
    assert body["messages"][0]["id"].startswith("wamid.")
    assert mock.deliveries() == {"row-1": 1}
    assert mock.recipients() == {PHONE: 1}
    stats = requests.get(f"{mock.url}/_mock/stats", timeout=5).json()
    assert stats == {
        "requests": 1,
        "delivered": 1,
        "unique": 1,
        "duplicates": 0,
        "duplicate_keys": [],
        "by_status": {"200": 1},
        "hung": 0,
        "in_flight": 0,
        "receipts_scheduled": 0,  # no receipts_url: it never hears back
        "receipts_pending": 0,
        "receipts_posted": 0,
        "receipts_failed": 0,
        "receipt_posts": 0,
    }


def test_send_without_idempotency_key_is_identified_by_recipient(mock):
    send(mock)

    assert mock.deliveries() == {f"to:{PHONE}": 1}


def test_repeated_idempotency_key_counts_as_duplicate(mock):
    send(mock, key="row-1")
    send(mock, key="row-1")
    send(mock, key="row-2", to="628000000002")

    stats = mock.stats()
    assert (stats["delivered"], stats["unique"], stats["duplicates"]) == (3, 2, 1)
    assert stats["duplicate_keys"] == ["row-1"]
    assert requests.get(f"{mock.url}/_mock/deliveries", timeout=5).json() == {"row-1": 2, "row-2": 1}


def test_fail_first_fails_once_per_key_then_delivers_once(mock):
    mock.configure(fail_first=1)

    statuses = [send(mock, key="row-1").status_code for _ in range(2)]

    assert statuses == [500, 200]
    assert mock.deliveries() == {"row-1": 1}
    assert mock.stats()["by_status"] == {"500": 1, "200": 1}


def test_injected_429_carries_retry_after_and_is_not_a_delivery(mock):
    mock.configure(fail_rate=1.0, fail_status=429, retry_after=7)

    response = send(mock, key="row-1")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == 130429
    assert mock.stats()["delivered"] == 0


def test_token_is_required_when_configured(mock):
    mock.configure(token="secret")

    missing, wrong, right = send(mock), send(mock, token="nope"), send(mock, token="secret")

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json()["error"] == {
        "message": "Invalid OAuth access token.",
        "type": "OAuthException",
        "code": 190,
    }
    assert mock.stats()["delivered"] == 1


def test_probe_reveals_bad_token_and_otherwise_is_method_not_allowed(mock):
    mock.configure(token="secret")

    bad = requests.get(f"{mock.url}/test_camp", headers={"Authorization": "Bearer nope"}, timeout=5)
    good = requests.head(f"{mock.url}/test_camp", headers={"Authorization": "Bearer secret"}, timeout=5)

    assert bad.status_code == 401
    assert good.status_code == 405
    assert good.headers["Allow"] == "POST"
    assert mock.stats()["requests"] == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"messaging_product": "whatsapp"}', b'{"to": ""}', b'["628123456789"]'],
    ids=["invalid-json", "missing-to", "empty-to", "not-an-object"],
)
def test_malformed_send_is_400_with_whatsapp_error(mock, body):
    response = requests.post(
        f"{mock.url}/test_camp", data=body, headers={"Content-Type": "application/json"}, timeout=5
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("OAuthException", 100)
    assert mock.stats()["delivered"] == 0


def test_config_endpoint_changes_behaviour_at_runtime(mock):
    change = {"fail_rate": 1.0, "fail_status": 503}
    config = requests.post(f"{mock.url}/_mock/config", json=change, timeout=5).json()
    failed = send(mock)
    requests.post(f"{mock.url}/_mock/config", json={"fail_rate": 0.0}, timeout=5)
    delivered = send(mock)

    assert config == {
        "latency_ms": 0.0,
        "fail_rate": 1.0,
        "fail_status": 503,
        "fail_first": 0,
        "retry_after": None,
        "timeout_rate": 0.0,
        "hang_seconds": 30.0,
        "token": None,
        "reset_rate": 0.0,
        "plain_body": False,
        "success_body": None,
        "trickle_seconds": 0.0,
        "receipts_url": None,
        "receipts_secret": None,
        "delivered_after": 1.0,
        "read_after": 2.0,
        "read_share": 0.6,
        "undelivered_share": 0.0,
        "stop_share": 0.0,
        "receipt_retries": 3,
    }
    assert (failed.status_code, delivered.status_code) == (503, 200)


@pytest.mark.parametrize(
    "change",
    [
        {"fail_rate": 2},
        {"fail_status": 200},
        {"no_such_knob": 1},
        [1],
        {"read_share": 1.5},
        {"receipts_url": "ftp://x"},
        {"receipts_secret": ""},
    ],
)
def test_config_endpoint_rejects_bad_settings_and_keeps_the_old_ones(mock, change):
    response = requests.post(f"{mock.url}/_mock/config", json=change, timeout=5)

    assert response.status_code == 400
    assert mock.config()["fail_rate"] == 0.0
    assert mock.config()["fail_status"] == 500


def test_reset_clears_records_but_keeps_config(mock):
    mock.configure(fail_first=1)
    send(mock, key="row-1")
    send(mock, key="row-1")

    requests.post(f"{mock.url}/_mock/reset", timeout=5)

    assert mock.stats()["requests"] == 0
    assert mock.deliveries() == {}
    assert mock.config()["fail_first"] == 1
    assert send(mock, key="row-1").status_code == 500


def test_latency_delays_every_answer(mock):
    mock.configure(latency_ms=200)

    started = time.monotonic()
    send(mock)

    assert time.monotonic() - started >= 0.2


def test_hung_send_times_out_the_client_and_is_not_delivered(mock):
    mock.configure(timeout_rate=1.0, hang_seconds=1.5)  # still hanging when stats are read below

    with pytest.raises(requests.exceptions.ReadTimeout):
        send(mock, timeout=0.1)

    during = mock.stats()
    after = wait_for_stats(mock, lambda stats: stats["in_flight"] == 0)
    assert (during["hung"], during["in_flight"]) == (1, 1)
    assert (after["hung"], after["in_flight"], after["delivered"], after["by_status"]) == (1, 0, 0, {})


def test_hung_send_ends_with_the_connection_closed_and_no_answer(mock):
    mock.configure(timeout_rate=1.0, hang_seconds=0.05)

    with pytest.raises(requests.exceptions.ConnectionError):
        send(mock, timeout=5)

    assert mock.stats()["delivered"] == 0


def test_pooled_session_gets_every_send_answered(mock):
    with requests.Session() as session:
        responses = [
            session.post(f"{mock.url}/test_camp", json=template_message(f"62800000{n:04d}"), timeout=5)
            for n in range(20)
        ]

    assert {response.status_code for response in responses} == {200}
    assert mock.stats()["unique"] == 20


def test_health_is_ok(mock):
    response = requests.get(f"{mock.url}/health", timeout=5)

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_command_line_server_delivers_and_stops_cleanly_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "common.mock_whatsapp", "--port", "0"],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline().strip()
        assert line.startswith("mock WhatsApp endpoint listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]

        response = requests.post(f"{url}/test_camp", json=template_message(), timeout=5)
        stats = requests.get(f"{url}/_mock/stats", timeout=5).json()
        process.send_signal(signal.SIGTERM)

        assert response.status_code == 200
        assert stats["delivered"] == 1
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def test_reset_rate_resets_the_connection_without_a_delivery(mock):
    mock.configure(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        send(mock)
    assert mock.stats()["delivered"] == 0


def test_plain_body_answers_without_json(mock):
    mock.configure(plain_body=True)
    response = send(mock)
    assert response.status_code == 200 and response.text == "OK"
    assert mock.stats()["delivered"] == 1


def test_trickled_deliveries_are_recorded_by_key(mock):
    send(mock, key="row-1")
    mock.configure(trickle_seconds=0.2)
    trickled = send(mock, key="row-2")
    mock.configure(fail_rate=1.0)
    failed = send(mock, key="row-3")

    listed = requests.get(f"{mock.url}/_mock/trickled", timeout=5).json()
    assert (trickled.status_code, failed.status_code) == (200, 500)
    assert trickled.json()["messages"][0]["id"].startswith("wamid.")
    assert listed == mock.trickled() == {"row-2": 1}


# Receipts: the mock hears back like a gateway, in each dialect, to a receiver
# that checks what the web service's webhook routes check.

RECEIPT_SECRET = "receipt-secret"
WEBHOOK_OF = {"cloud": "meta", "waha": "waha", "gowa": "gowa"}


class Receiver:
    """A webhook receiver on a free port: keeps each POST's headers and body,
    and answers `status`, or 503 to the first `refuse_first` posts."""

    def __init__(self, status=200, refuse_first=0):
        self.status = status
        self.refuse_first = refuse_first
        self.posts: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.posts.append((dict(self.headers), body))
                    refused = len(receiver.posts) <= receiver.refuse_first
                self.send_response(503 if refused else receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/x"

    def events(self, webhook: str, secret: str = RECEIPT_SECRET) -> tuple[list, list]:
        """Every post read as the web service reads it; each must be signed right."""
        receipts, replies = [], []
        dialect = DIALECTS[webhook]
        with self.lock:
            posts = list(self.posts)
        for headers, body in posts:
            assert dialect.verify(secret, headers.get, body) == "ok"
            events = dialect.read(body)
            assert events is not None
            receipts += events.receipts
            replies += events.replies
        return receipts, replies


def send_as(mock, dialect: str, phone: str = PHONE) -> str:
    """One send in a dialect; the message id our provider keeps from the answer."""
    if dialect == "waha":
        answer = requests.post(f"{mock.url}/api/sendText", json={"chatId": f"{phone}@c.us", "text": "hi"}, timeout=5)
        assert answer.status_code == 201
        return waha_sent_id(answer.json())
    if dialect == "gowa":
        body = {"phone": f"{phone}@s.whatsapp.net", "message": "hi"}
        answer = requests.post(f"{mock.url}/send/message", json=body, timeout=5)
        assert answer.status_code == 200
        return answer.json()["results"]["message_id"]
    answer = send(mock, to=phone)
    assert answer.status_code == 200
    return answer.json()["messages"][0]["id"]


def settled(mock, seconds: float = 5.0) -> dict:
    """Stats once every receipt is posted or given up. A send's receipts are
    scheduled before its answer, so none can come after this."""
    return wait_for_stats(mock, lambda s: s["receipts_pending"] == 0, seconds)


@pytest.mark.parametrize("dialect", ["cloud", "waha", "gowa"])
def test_receipts_come_back_signed_in_the_dialect_and_name_the_sent_message(mock, dialect):
    with Receiver() as receiver:
        mock.configure(
            receipts_url=receiver.url, receipts_secret=RECEIPT_SECRET, delivered_after=0, read_after=0.05, read_share=1
        )
        sent = {send_as(mock, dialect, phone=f"6281234567{n:02d}") for n in range(3)}
        stats = settled(mock)
        receipts, replies = receiver.events(WEBHOOK_OF[dialect])

    assert {(r.message_id, r.status) for r in receipts} == {(i, s) for i in sent for s in ("delivered", "read")}
    assert len(receipts) == 6 and replies == []
    assert all(r.event_at for r in receipts)
    assert (stats["receipts_posted"], stats["receipts_failed"]) == (6, 0)


@pytest.mark.parametrize(
    "dialect,failed", [("cloud", ("failed", "131026")), ("waha", ("failed", None)), ("gowa", None)]
)
def test_undelivered_messages_fail_as_the_dialect_says_and_gowa_stays_silent(mock, dialect, failed):
    with Receiver() as receiver:
        mock.configure(
            receipts_url=receiver.url, receipts_secret=RECEIPT_SECRET, delivered_after=0, undelivered_share=1
        )
        sent = send_as(mock, dialect)
        settled(mock)
        receipts, _ = receiver.events(WEBHOOK_OF[dialect])

    assert [(r.message_id, r.status, r.error_code) for r in receipts] == ([(sent, *failed)] if failed else [])


@pytest.mark.parametrize("dialect", ["cloud", "waha", "gowa"])
def test_a_share_of_recipients_reply_stop_and_it_reads_as_an_opt_out(mock, dialect):
    with Receiver() as receiver:
        mock.configure(
            receipts_url=receiver.url, receipts_secret=RECEIPT_SECRET, delivered_after=0, read_after=0, stop_share=1
        )
        send_as(mock, dialect, phone="6281234567890")
        settled(mock)
        _, replies = receiver.events(WEBHOOK_OF[dialect])

    assert [(r.phone, r.text) for r in replies] == [("6281234567890", "STOP")]
    assert OptOutRules().decide(replies[0]) == "out"


def test_many_due_meta_statuses_go_in_batched_bodies(mock):
    with Receiver() as receiver:
        mock.configure(receipts_url=receiver.url, receipts_secret=RECEIPT_SECRET, delivered_after=0.5, read_share=0)
        with requests.Session() as session:
            for n in range(150):
                session.post(f"{mock.url}/test_camp", json=template_message(f"62812{n:08d}"), timeout=5)
        stats = settled(mock)
        receipts, _ = receiver.events("meta")

    assert len({r.message_id for r in receipts}) == 150
    assert stats["receipts_posted"] == 150 and stats["receipt_posts"] < 150


def test_a_refused_receipt_post_is_posted_again_until_taken(mock):
    with Receiver(refuse_first=2) as receiver:
        mock.configure(receipts_url=receiver.url, receipts_secret=RECEIPT_SECRET, delivered_after=0, read_share=0)
        sent = send_as(mock, "cloud")
        stats = settled(mock)
        receipts, _ = receiver.events("meta")
    assert len(receiver.posts) == 3 and {(r.message_id, r.status) for r in receipts} == {(sent, "delivered")}
    assert (stats["receipts_posted"], stats["receipts_failed"], stats["receipt_posts"]) == (1, 0, 3)


def test_a_reset_stops_the_retries_of_earlier_webhooks_and_their_counts(mock):
    with Receiver(status=503) as refusing:
        mock.configure(receipts_url=refusing.url, delivered_after=0, read_share=0, receipt_retries=3)
        assert send(mock).status_code == 200
        wait_for_stats(mock, lambda _: len(refusing.posts) == 1)
        mock.reset()
        time.sleep(1.0)  # past the first retry's 0.5 s
        assert len(refusing.posts) == 1
    stats = mock.stats()
    assert (stats["receipts_posted"], stats["receipts_failed"], stats["receipt_posts"]) == (0, 0, 0)


def test_failed_receipt_posts_are_counted_and_never_break_sends(mock):
    with Receiver(status=503) as refusing:
        mock.configure(receipts_url=refusing.url, delivered_after=0, read_share=0, receipt_retries=1)
        assert send(mock).status_code == 200
        stats = settled(mock)
        assert len(refusing.posts) == 2  # the post and its one retry
    assert (stats["receipts_posted"], stats["receipts_failed"]) == (0, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    mock.configure(receipts_url=f"http://127.0.0.1:{closed}/webhooks/meta")
    assert send(mock).status_code == 200
    stats = wait_for_stats(mock, lambda s: s["receipts_failed"] == 2)
    assert stats["receipts_failed"] == 2 and stats["delivered"] == 2


def test_without_a_secret_receipts_go_unsigned_and_odd_answers_get_none(mock):
    with Receiver() as receiver:
        mock.configure(receipts_url=receiver.url, delivered_after=0, read_share=0)
        send(mock)
        settled(mock)
        mock.configure(success_body='{"ok": true}')
        send(mock)
        time.sleep(0.2)
        posts = list(receiver.posts)
    assert len(posts) == 1 and "X-Hub-Signature-256" not in posts[0][0]
    assert mock.stats()["receipts_scheduled"] == 1


def test_command_line_receipts_flags_reach_the_config(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "common.mock_whatsapp",
            "--port",
            "0",
            "--receipts-url",
            "http://127.0.0.1:9/webhooks/meta",
            "--delivered-after",
            "0.5",
            "--read-after",
            "1.5",
            "--read-share",
            "0.25",
            "--undelivered-share",
            "0.1",
            "--stop-share",
            "0.01",
            "--receipt-retries",
            "5",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "MOCK_RECEIPTS_SECRET": "from-env"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stderr.readline().strip().rsplit(" ", 1)[1]
        config = requests.get(f"{url}/_mock/config", timeout=5).json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert {name: value for name, value in config.items() if name.startswith(("receipts_", "delivered_", "read_"))} | {
        "undelivered_share": config["undelivered_share"],
        "stop_share": config["stop_share"],
        "receipt_retries": config["receipt_retries"],
    } == {
        "receipts_url": "http://127.0.0.1:9/webhooks/meta",
        "receipts_secret": "from-env",
        "delivered_after": 0.5,
        "read_after": 1.5,
        "read_share": 0.25,
        "undelivered_share": 0.1,
        "stop_share": 0.01,
        "receipt_retries": 5,
    }
