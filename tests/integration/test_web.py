"""The web service as a process, over real HTTP: health, status, pause and
resume, re-sending failed (and undelivered) rows, the ingest API, the OpenAPI
document, Basic auth, and what it answers to bodies too big, too deep or not text."""

import re
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from playwright.sync_api import sync_playwright

from common.delivery.receipts import Receipt
from common.ops.openapi import document
from common.queue.heartbeat import Heartbeat
from common.store.campaign import FAILED, PENDING, CampaignTable
from common.store.receipts import ReceiptStore
from tests.conftest import drain, run_role, start_role
from tests.integration.test_processes import stop

pytestmark = pytest.mark.integration

AUTH = ("admin", "s3cret")
MIB = 1024 * 1024


@pytest.fixture
def web(role_env, campaign, real_redis):
    """The service on a free loopback port, with Basic auth; yields its base URL."""
    process = start_role(
        "common.web", dict(role_env, WEB_PORT="0", WEB_USERNAME=AUTH[0], WEB_PASSWORD=AUTH[1], DEFAULT_REGION="ID")
    )
    url = None
    for line in process.stderr:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    assert url, "the web service did not start"
    yield url
    code, err = stop(process)
    assert code == 0, err[-500:]


def test_health_needs_no_credentials_and_everything_else_does(web):
    assert requests.get(f"{web}/health", timeout=5).json() == {"status": "ok", "mysql": "ok", "redis": "ok"}
    refused = requests.get(f"{web}/api/status", timeout=5)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(f"{web}/api/status", auth=("admin", "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{web}/api/status", auth=AUTH, timeout=5).status_code == 200


def test_ingest_adds_pending_rows_that_the_pipeline_then_sends(web, campaign, role_env, mock):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40)")
    answer = requests.post(
        f"{web}/api/messages",
        auth=AUTH,
        timeout=10,
        json=[
            {"to": "+62 812-3456-7890", "params": {"column2": "Ana"}},
            {"to": "081234567891", "template": "hello_world"},  # national: DEFAULT_REGION=ID
        ],
    )
    assert answer.status_code == 202, answer.text
    ids = answer.json()["ids"]
    assert answer.json()["status"] == "queued" and len(ids) == 2
    assert campaign.query("SELECT id, column1, column3, column2 FROM campaign_master_1 ORDER BY id") == (
        (ids[0], "6281234567890", PENDING, "Ana"),
        (ids[1], "6281234567891", PENDING, None),
    )
    for module in ("producers.odd", "producers.even", "consumers.odd", "consumers.even"):
        assert run_role(module, role_env, "--once").returncode == 0
    assert sorted(mock.recipients()) == ["6281234567890", "6281234567891"]


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"to": "not a phone"}, "message 0: phone has characters"),
        ([{"to": "+6281234567890"}, {"to": "0812"}], "message 1:"),
        ({"to": "+6281234567890", "params": {"column9": "x"}}, "not a column of the campaign table"),
        ({"to": "+6281234567890", "template": "promo_2026"}, "this campaign sends one template"),
        ({"to": "+6281234567890", "extra": 1}, "unknown fields extra"),
        ([], "no messages"),
        ("just text", "must be an object"),
    ],
)
def test_bad_input_is_a_400_with_the_reason_and_adds_nothing(web, campaign, body, reason):
    answer = requests.post(f"{web}/api/messages", auth=AUTH, json=body, timeout=10)
    assert answer.status_code == 400 and reason in answer.json()["error"]
    assert campaign.query("SELECT COUNT(*) FROM campaign_master_1") == ((0,),)


def test_a_retried_request_with_its_idempotency_key_adds_nothing_and_gets_the_first_ids(web, campaign):
    body = [{"to": "+6281234567890"}, {"to": "+6281234567891"}]

    def post(key, json):
        return requests.post(
            f"{web}/api/messages",
            auth=AUTH,
            json=json,
            timeout=10,
            headers={"Idempotency-Key": key},
        )

    first = post("order-42", body)
    again = post("order-42", body)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json() and len(first.json()["ids"]) == 2
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert campaign.count(PENDING) == 2
    other = post("order-43", body)  # a new key is a new request
    assert other.status_code == 202 and set(other.json()["ids"]).isdisjoint(first.json()["ids"])
    reused = post("order-42", [{"to": "+6281234567899"}])
    assert reused.status_code == 422 and "different body" in reused.json()["error"]
    assert post("bad key", body).status_code == 400  # a space is not allowed
    assert campaign.count(PENDING) == 4


def test_concurrent_retries_with_one_idempotency_key_add_the_rows_once(web, campaign):
    body = [{"to": f"+62812345{n:05d}"} for n in range(200)]

    def post(_):
        return requests.post(
            f"{web}/api/messages", auth=AUTH, json=body, timeout=30, headers={"Idempotency-Key": "batch-7"}
        )

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert [a.status_code for a in answers] == [202] * 4
    assert len({tuple(a.json()["ids"]) for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 3
    assert campaign.count(PENDING) == 200


def test_without_the_idempotency_table_it_says_to_load_the_schema(role_env, campaign):
    campaign.query("DROP TABLE ingest_requests")
    result = run_role("common.web", dict(role_env, WEB_PORT="0"), timeout=30)
    assert result.returncode == 2 and "ingest_requests" in result.stderr and "schema.sql" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_body_that_is_not_json_is_a_400(web):
    answer = requests.post(
        f"{web}/api/messages", auth=AUTH, data="{", timeout=5, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]


def test_status_pause_and_resume_over_http(web, campaign, real_redis):
    campaign.add(6)
    status = requests.get(f"{web}/api/status", auth=AUTH, timeout=5).json()
    assert status["total"]["pending"] == 6 and [p["partition"] for p in status["partitions"]] == ["0/2", "1/2"]
    assert requests.post(f"{web}/api/pause", auth=AUTH, json={"partition": 1}, timeout=5).json() == {
        "paused": True,
        "partition": "1/2",
    }
    assert real_redis.exists("paused:2:1")
    assert requests.get(f"{web}/api/status", auth=AUTH, timeout=5).json()["partitions"][1]["paused"]
    requests.post(f"{web}/api/resume", auth=AUTH, json={"partition": 1}, timeout=5)
    assert not real_redis.exists("paused:2:1")
    assert requests.post(f"{web}/api/pause", auth=AUTH, json={"partition": 7}, timeout=5).status_code == 400


def test_the_status_after_a_run_is_what_the_document_says_field_by_field(web, campaign, build, real_redis):
    """Every list filled (a live process, failure reasons, recent failures,
    sends per minute): the document holds each field the answer has, no more."""
    producer, consumer = build
    campaign.add(8, phone=lambda i: "not a phone" if i == 0 else f"62812{i:08d}")  # row 1: odd
    producer().loop()
    c = consumer()
    drain(c)
    beat = Heartbeat(real_redis, "", "consumer", c.settings.partition)
    beat.beat(c.vitals)
    answer = requests.get(f"{web}/api/status", auth=AUTH, timeout=10)
    view = answer.json()
    assert view["processes"] and view["failure_reasons"] and view["recent_failures"] and view["sent_per_minute"]
    assert view["total"]["sent"] == 3 and view["total"]["failed"] == 1
    schemathesis.openapi.from_dict(document(2))["/api/status"]["GET"].validate_response(answer)
    beat.stop()


def test_resend_needs_credentials_and_sets_back_the_failed_rows_asked_for(web, campaign):
    campaign.add(6)
    campaign.query("UPDATE campaign_master_1 SET column3 = 2")
    campaign.query(
        "INSERT INTO campaign_failures (campaign_table, row_id, attempts, reason) SELECT"
        " 'campaign_master_1', id, 3, IF(id <= 4, 'read timeout', 'HTTP 400: bad template')"
        " FROM campaign_master_1"
    )
    refused = requests.post(f"{web}/api/resend", json={}, timeout=5)
    assert refused.status_code == 401 and campaign.count(FAILED) == 6
    for body in ({"reason": 5}, {"partition": 2}, {"partition": True}, {"reason": "timeout", "all": True}, ["x"]):
        answer = requests.post(f"{web}/api/resend", auth=AUTH, json=body, timeout=5)
        assert answer.status_code == 400 and "whole number" in answer.json()["error"], body
    assert campaign.count(FAILED) == 6
    answer = requests.post(f"{web}/api/resend", auth=AUTH, json={"reason": "timeout", "partition": 1}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"resent": 2}
    assert [campaign.states()[i] for i in range(1, 7)] == [PENDING, FAILED, PENDING] + [FAILED] * 3
    assert sorted(campaign.failure_reasons()) == [2, 4, 5, 6]
    assert requests.post(f"{web}/api/resend", auth=AUTH, json={}, timeout=5).json() == {"resent": 4}
    assert requests.get(f"{web}/api/status", auth=AUTH, timeout=5).json()["total"]["failed"] == 0


def test_resend_undelivered_sets_back_the_sent_rows_whose_message_failed_after_acceptance(web, campaign):
    campaign.add(4)
    campaign.query("UPDATE campaign_master_1 SET column3 = 0")
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, message_id)"
        " SELECT 'campaign_master_1', id, 1, 'sent', CONCAT('wamid.', id) FROM campaign_master_1"
    )
    campaign.query(
        "INSERT INTO message_states (message_id, status, campaign_table, row_id) VALUES"
        " ('wamid.1', 'failed', 'campaign_master_1', 1), ('wamid.2', 'delivered', 'campaign_master_1', 2),"
        " ('wamid.3', 'failed', 'campaign_master_1', 3), ('wamid.4', 'failed', 'campaign_master_1', 4)"
    )
    refused = requests.post(f"{web}/api/resend", json={"undelivered": True}, timeout=5)
    assert refused.status_code == 401 and campaign.count(PENDING) == 0
    both = requests.post(f"{web}/api/resend", auth=AUTH, json={"undelivered": True, "reason": "x"}, timeout=5)
    assert both.status_code == 400 and campaign.count(PENDING) == 0
    one = requests.post(f"{web}/api/resend", auth=AUTH, json={"undelivered": True, "partition": 0}, timeout=5)
    assert one.status_code == 200 and one.json() == {"resent": 1}
    assert campaign.states() == {1: 0, 2: 0, 3: 0, 4: PENDING}
    rest = requests.post(f"{web}/api/resend", auth=AUTH, json={"undelivered": True}, timeout=5)
    assert rest.json() == {"resent": 2} and campaign.states() == {1: PENDING, 2: 0, 3: PENDING, 4: PENDING}
    funnel = requests.get(f"{web}/api/status", auth=AUTH, timeout=5).json()["after_sending"]["total"]
    assert (funnel["sent"], funnel["delivered"], funnel["failed_after_acceptance"]) == (1, 1, 3)


def test_the_openapi_document_lists_every_route(web):
    doc = requests.get(f"{web}/openapi.json", auth=AUTH, timeout=5).json()
    assert doc["openapi"].startswith("3.") and set(doc["paths"]) == {
        "/",
        "/health",
        "/api/status",
        "/api/messages",
        "/api/pause",
        "/api/resume",
        "/api/resend",
        "/api/optouts",
        "/api/optouts/remove",
        "/openapi.json",
        "/metrics",
    }


def test_it_refuses_a_public_address_without_credentials(role_env):
    result = run_role("common.web", dict(role_env, WEB_HOST="0.0.0.0", WEB_PORT="0"), timeout=30)
    assert result.returncode == 2 and "refusing to listen on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Chromium is not installed (scripts/setup installs it when run as root)")
    return path


def test_the_dashboard_shows_the_databases_numbers_on_a_phone_and_its_buttons_pause_and_resume(
    web, campaign, role_env, mock, real_redis
):
    campaign.add(30)
    campaign.add(2, phone=lambda i: "not-a-phone")
    for module in ("producers.even", "consumers.even"):  # even rows go out; odd ones stay pending
        assert run_role(module, role_env, "--once").returncode == 0
    sent, failed, pending = campaign.count(0), campaign.count(2), campaign.count(PENDING)
    assert sent and pending
    # Receipts: the first three sent rows delivered 2 s after their send, one of them read, the fourth failed.
    sends = campaign.query(
        "SELECT message_id, UNIX_TIMESTAMP(created_at) FROM delivery_attempts WHERE outcome = 'sent' ORDER BY row_id"
    )
    store = ReceiptStore(CampaignTable(campaign.target, "campaign_master_1", "column1", "column3"))
    store.add(
        "meta",
        [Receipt(message_id, "delivered", float(at) + 2) for message_id, at in sends[:3]]
        + [Receipt(sends[0][0], "read", float(sends[0][1]) + 5), Receipt(sends[3][0], "failed", None)],
    )
    store.match()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(
            http_credentials={"username": AUTH[0], "password": AUTH[1]}, viewport={"width": 390, "height": 844}
        )  # a phone
        page.goto(f"{web}/")
        page.wait_for_function("document.getElementById('state').textContent !== 'loading'")
        total = 'tr[data-partition="total"]'
        assert page.inner_text(f"{total} td.sent") == f"{sent:,}"
        assert page.inner_text(f"{total} td.failed") == f"{failed:,}"
        assert page.inner_text(f"{total} td.pending") == f"{pending:,}"
        assert page.locator("#failures tr").count() == failed
        assert "not a number" in page.inner_text("#failures") or "characters" in page.inner_text("#failures")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
        assert page.locator("#chart rect").count() == 60
        funnel = '#funnel tr[data-partition="total"]'
        assert page.inner_text(f"{funnel} td.sent") == f"{sent:,}"
        assert page.inner_text(f"{funnel} td.delivered") == f"3{round(300 / sent)} %"  # the count, then its share
        assert page.inner_text(f"{funnel} td.read") == f"1{round(100 / sent)} %"
        assert page.inner_text(f"{funnel} td.failed_after_acceptance") == "1"
        assert page.inner_text(f"{funnel} td.p50") == page.inner_text(f"{funnel} td.p95") == "2.0"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

        page.click("button.pause:not([data-partition])")
        page.wait_for_function("document.getElementById('state').textContent === 'paused'")
        assert real_redis.exists("paused")
        page.click('tr[data-partition="1/2"] button.pause')
        page.wait_for_selector('tr[data-partition="1/2"] button.resume')
        assert real_redis.exists("paused:2:1")
        page.click("button.resume:not([data-partition])")
        page.wait_for_function("document.getElementById('state').textContent === 'sending'")
        assert not real_redis.exists("paused") and real_redis.exists("paused:2:1")

        questions = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        page.click("#resend")
        assert questions == [f"Send all {failed} failed rows again, each as a new message?"]
        assert campaign.count(2) == failed  # declined: nothing changed
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#resend")
        page.wait_for_function("document.getElementById('resent').textContent !== ''")
        assert page.inner_text("#resent").startswith(f"{failed} failed rows set back to pending")
        assert campaign.count(2) == 0
        page.wait_for_selector("#resend:disabled")  # the refreshed view has no failed row left
        browser.close()


def test_posts_must_be_json_so_a_cross_site_form_cannot_steer_the_campaign(web, real_redis):
    form = requests.post(f"{web}/api/pause", auth=AUTH, data={"partition": "1"}, timeout=5)
    assert form.status_code == 415 and not real_redis.exists("paused", "paused:2:1")
    for body in ({"partition": 1.5}, {"partition": True}, [1], {"partition": -1}, {"partition": 1, "all": True}):
        answer = requests.post(f"{web}/api/pause", auth=AUTH, json=body, timeout=5)
        assert answer.status_code == 400 and "whole number" in answer.json()["error"], body
    broken = requests.post(
        f"{web}/api/pause", auth=AUTH, data='{"partition": 1', timeout=5, headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]  # not taken for {}: the whole campaign
    assert not real_redis.keys("paused*")


def test_a_value_the_table_refuses_is_a_400_and_adds_nothing(web, campaign):
    campaign.query(
        "ALTER TABLE campaign_master_1 ADD COLUMN column4 INT, ADD COLUMN column5 VARCHAR(3), "
        "ADD COLUMN column6 VARCHAR(20) CHARACTER SET utf8mb3"
    )
    for params in ({"column4": "not a number"}, {"column5": "far too long"}, {"column6": "four bytes: \U0001f600"}):
        answer = requests.post(
            f"{web}/api/messages",
            auth=AUTH,
            timeout=5,
            json=[{"to": "+6281234567890"}, {"to": "+6281234567891", "params": params}],
        )
        assert answer.status_code == 400 and "MySQL refused the row" in answer.json()["error"], answer.text
    assert campaign.query("SELECT COUNT(*) FROM campaign_master_1") == ((0,),)


def test_without_credentials_only_requests_to_localhost_are_served(role_env, campaign, real_redis):
    process = start_role("common.web", dict(role_env, WEB_PORT="0"))
    try:
        url = next(m.group(1) for line in process.stderr if (m := re.search(r"listening on (http://\S+)", line)))
        assert requests.get(f"{url}/api/status", timeout=5).status_code == 200
        rebound = requests.get(f"{url}/api/status", headers={"Host": "evil.example:80"}, timeout=5)
        assert rebound.status_code == 403
    finally:
        stop(process)


def test_messages_can_bring_their_own_template_through_template_column(role_env, campaign, mock, real_redis):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN tpl VARCHAR(60)")
    env = dict(role_env, TEMPLATE_COLUMN="tpl")
    process = start_role("common.web", dict(env, WEB_PORT="0"))
    try:
        url = next(m.group(1) for line in process.stderr if (m := re.search(r"listening on (http://\S+)", line)))
        answer = requests.post(
            f"{url}/api/messages",
            timeout=10,
            json=[{"to": "+6281234567890", "template": "promo_nov"}, {"to": "+6281234567891"}],
        )
        assert answer.status_code == 202, answer.text
    finally:
        stop(process)
    assert campaign.query("SELECT column1, tpl FROM campaign_master_1 ORDER BY id") == (
        ("6281234567890", "promo_nov"),
        ("6281234567891", None),
    )
    for module in ("producers.odd", "producers.even", "consumers.odd", "consumers.even"):
        assert run_role(module, env, "--once").returncode == 0
    templates = {body["to"]: body["template"]["name"] for body in mock.bodies().values()}
    assert templates == {"6281234567890": "promo_nov", "6281234567891": "hello_world"}


def test_a_lone_surrogate_is_a_400_and_adds_nothing(web, campaign):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40)")
    for body in (
        '{"to": "+6281234567890", "params": {"column2": "\\ud800"}}',
        '{"to": "+6281234567890", "params": {"column2": "Ana \\udc00"}}',
        '[{"to": "+6281234567890\\ud83d"}]',
    ):
        for headers in ({}, {"Idempotency-Key": "order-1"}):
            answer = requests.post(
                f"{web}/api/messages",
                auth=AUTH,
                data=body,
                timeout=5,
                headers={"Content-Type": "application/json", **headers},
            )
            assert answer.status_code == 400 and "lone surrogate" in answer.json()["error"], body
    assert campaign.query("SELECT COUNT(*) FROM campaign_master_1") == ((0,),)


@pytest.mark.parametrize("route", ["/api/messages", "/api/pause"])
def test_json_nested_a_hundred_thousand_deep_is_a_400(web, campaign, real_redis, route):
    for deep in ("[" * 100_000 + "]" * 100_000, '{"to": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001):
        answer = requests.post(
            f"{web}{route}", auth=AUTH, data=deep, timeout=10, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]
    assert campaign.query("SELECT COUNT(*) FROM campaign_master_1") == ((0,),) and not real_redis.keys("paused*")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_number_that_is_not_finite_is_a_400(web, campaign, constant):
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40)")
    answer = requests.post(
        f"{web}/api/messages",
        auth=AUTH,
        timeout=5,
        headers={"Content-Type": "application/json"},
        data=f'{{"to": "+6281234567890", "params": {{"column2": {constant}}}}}',
    )
    assert answer.status_code == 400, answer.text
    assert campaign.query("SELECT COUNT(*) FROM campaign_master_1") == ((0,),)


def send_unfinished(url: str, head: str, body: bytes) -> bytes:
    """POST by hand and stop short of the body's end: what the server answers
    then, it answered without reading the rest."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            f"POST /api/messages HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n".encode()
            + head.encode()
            + b"\r\n"
            + body
        )
        return connection.recv(4096)


def test_a_body_announced_over_the_limit_is_a_413_before_any_of_it_is_sent(web):
    answer = send_unfinished(web, f"Content-Length: {150 * MIB}\r\n", b"")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]


def test_a_chunked_body_over_the_limit_is_a_413_once_the_limit_is_passed(web):
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    answer = send_unfinished(web, "Transfer-Encoding: chunked\r\n", chunk * 17)  # 1 MiB + 64 KiB, no last chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]


def test_a_150_mb_upload_is_stopped_by_a_413_far_short_of_its_end(web, campaign):
    sent = []

    def body():
        for _ in range(150 * 16):
            sent.append(64 * 1024)
            yield b" " * 64 * 1024

    answer = requests.post(
        f"{web}/api/messages", auth=AUTH, data=body(), timeout=30, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert sum(sent) < 50 * MIB  # the server answered, so the client stopped: only socket buffers took more
    assert requests.get(f"{web}/health", timeout=5).status_code == 200


def test_web_max_body_sets_the_largest_body_taken(role_env, campaign, real_redis):
    process = start_role("common.web", dict(role_env, WEB_PORT="0", WEB_MAX_BODY="2048"))
    try:
        url = next(m.group(1) for line in process.stderr if (m := re.search(r"listening on (http://\S+)", line)))
        message = '{"to": "+6281234567890"}'

        def post(size):
            return requests.post(
                f"{url}/api/messages",
                data=message.ljust(size),
                timeout=5,
                headers={"Content-Type": "application/json"},
            )

        assert post(2048).status_code == 202
        too_big = post(2049)
        assert too_big.status_code == 413 and too_big.headers["Content-Type"].startswith("text/plain")
    finally:
        stop(process)
    assert campaign.count(PENDING) == 1
