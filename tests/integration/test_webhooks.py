"""Receipts and replies from the gateways' webhooks, through the web service as
a process over real HTTP, into the real Redis inbox and MySQL: signatures
per dialect on real sample payloads, duplicates and out-of-order events,
receipts that come before the send is recorded, and opt-outs honoured by the
next claimed batch."""

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests

from common.delivery.receipts import Receipt
from common.store.campaign import FAILED, SENT
from common.store.receipts import ReceiptStore
from common.testing.chaos.faults import BUSY_SCRIPT
from common.testing.dialects import Cloud, Gowa, Waha
from common.testing.services import RedisServer
from tests.conftest import drain, start_role
from tests.integration.test_processes import stop

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"
SECRETS = {"meta": "meta-app-secret", "waha": "waha-hmac-key", "gowa": "gowa-webhook-secret"}
META_ID = "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjNFQjBBMUIyQzNENEU1RjYwNzE4AA=="
STANZA = "3EB0A1B2C3D4E5F60718"  # WAHA's ack names it true_<chat>_<stanza>; gowa's by itself


def body_of(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def signed(dialect: str, body: bytes, secret: str | None = None) -> dict:
    """The signature headers the gateway sends, as the mock gateway makes them."""
    return {"meta": Cloud, "waha": Waha, "gowa": Gowa}[dialect].sign(secret or SECRETS[dialect], body)


def serve(env: dict, module: str = "common.web"):
    process = start_role(module, dict(env, WEB_PORT="0", WEBHOOK_PORT="0"))
    for line in process.stderr:
        if match := re.search(r"listening on (http://\S+)", line):
            return process, match.group(1)
    raise AssertionError(f"{module} did not start")


@pytest.fixture
def secrets_env(role_env):
    return dict(
        role_env,
        META_APP_SECRET=SECRETS["meta"],
        META_VERIFY_TOKEN="verify-me",
        WAHA_WEBHOOK_KEY=SECRETS["waha"],
        GOWA_WEBHOOK_SECRET=SECRETS["gowa"],
    )


@contextmanager
def served(*modules_and_envs):
    """Start each (module, env) and give their URLs; stop them all however the
    block ends, and, when it ended well, each must have exited 0."""
    started = []
    try:
        for module, env in modules_and_envs:
            started.append(serve(env, module))
        yield [url for _, url in started]
    finally:
        results = [stop(process) for process, _ in reversed(started)]
    for code, err in results:
        assert code == 0, err[-500:]


@pytest.fixture
def web(secrets_env, campaign, real_redis):
    with served(("common.web", secrets_env)) as (url,):
        yield url


@pytest.fixture(params=["web service", "receiver"])
def endpoint(request, secrets_env, campaign, real_redis):
    """Where gateways post: the web service's own routes, or the lean receiver
    (python -m common.webhooks) with the web service writing its inbox to MySQL."""
    servers = [("common.web", secrets_env)] + (
        [("common.webhooks", secrets_env)] if request.param == "receiver" else []
    )
    with served(*servers) as urls:
        yield urls[-1]


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own, to stop, refuse or hold up."""
    server = RedisServer(tmp_path, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver_env(role_env, own_redis):
    return dict(role_env, REDIS_URL=own_redis.url, META_APP_SECRET=SECRETS["meta"])


def post(url: str, dialect: str, body: bytes, headers: dict) -> requests.Response:
    return requests.post(
        f"{url}/webhooks/{dialect}", data=body, headers={"Content-Type": "application/json", **headers}, timeout=5
    )


def eventually(read, timeout: float = 10.0):
    """What `read()` returns once it is truthy (the writer drains the inbox every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def receipts(campaign) -> list[tuple]:
    return list(campaign.query("SELECT gateway, message_id, status FROM delivery_receipts ORDER BY id"))


def state(campaign, message_id: str):
    rows = campaign.query(
        "SELECT status, error_code, delivered_at IS NOT NULL, read_at IS NOT NULL, campaign_table, row_id"
        " FROM message_states WHERE message_id = %s",
        (message_id,),
    )
    return rows[0] if rows else None


@pytest.mark.parametrize(
    "dialect,fixture,stored",
    [
        (
            "meta",
            "meta_statuses",
            {
                ("meta", META_ID, "sent"),
                ("meta", META_ID, "delivered"),
                ("meta", META_ID, "read"),
                ("meta", "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjNFQjBENEU1RjYwNzE4MjkzQTQxAA==", "failed"),
            },
        ),
        ("waha", "waha_message_ack", {("waha", STANZA, "read")}),
        ("gowa", "gowa_message_ack", {("gowa", STANZA, "delivered")}),
    ],
)
def test_a_signed_receipt_is_stored_and_a_forged_or_unsigned_one_is_not(endpoint, campaign, dialect, fixture, stored):
    web = endpoint
    body = body_of(fixture)
    assert post(web, dialect, body, {}).status_code == 401
    assert post(web, dialect, body, signed(dialect, body, secret="an old or wrong secret")).status_code == 403
    tampered = body.replace(b"6281234567890", b"6289999999999")
    assert post(web, dialect, tampered, signed(dialect, body)).status_code == 403
    time.sleep(0.3)  # the writer would have stored them by now
    assert receipts(campaign) == []
    answer = post(web, dialect, body, signed(dialect, body))
    assert answer.status_code == 200, answer.text
    assert eventually(lambda: len(receipts(campaign)) == len(stored))
    assert set(receipts(campaign)) == stored


@pytest.mark.parametrize("module", ["common.web", "common.webhooks"])
def test_a_dialect_without_its_secret_is_not_served(role_env, campaign, real_redis, module):
    process, url = serve(dict(role_env, META_APP_SECRET="only-meta"), module)
    try:
        body = body_of("gowa_message_ack")
        assert post(url, "gowa", body, signed("gowa", body)).status_code == 404
        assert requests.get(f"{url}/webhooks/meta", params={"hub.mode": "subscribe"}, timeout=5).status_code == 404
        assert post(url, "nonsense", body, {}).status_code == 404
        assert post(url, "meta", b"not json", signed("meta", b"not json", "only-meta")).status_code == 400
    finally:
        stop(process)


def test_meta_subscription_echoes_the_challenge_only_for_our_verify_token(endpoint):
    web = endpoint
    asked = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "verify-me"}
    answer = requests.get(f"{web}/webhooks/meta", params=asked, timeout=5)
    assert answer.status_code == 200 and answer.text == "1158201444"
    wrong = requests.get(f"{web}/webhooks/meta", params={**asked, "hub.verify_token": "guess"}, timeout=5)
    assert wrong.status_code == 403


def meta_status(message_id: str, status: str, at: int, **extra) -> bytes:
    value = {"messaging_product": "whatsapp", "statuses": [{"id": message_id, "status": status, "timestamp": str(at)}]}
    value["statuses"][0].update(extra)
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}).encode()


def test_receipts_twice_and_out_of_order_count_once_and_in_order(endpoint, campaign):
    web = endpoint
    order = [("read", 30), ("delivered", 20), ("read", 30), ("sent", 10), ("delivered", 20)]
    for status, at in order:
        body = meta_status("wamid.A", status, 1_750_000_000 + at)
        assert post(web, "meta", body, signed("meta", body)).status_code == 200
    assert eventually(lambda: len(receipts(campaign)) == 3)
    assert sorted(status for _, _, status in receipts(campaign)) == ["delivered", "read", "sent"]
    assert eventually(lambda: state(campaign, "wamid.A"))[:4] == ("read", None, 1, 1)
    failed = meta_status("wamid.A", "failed", 1_750_000_100, errors=[{"code": 131026, "title": "undeliverable"}])
    assert post(web, "meta", failed, signed("meta", failed)).status_code == 200
    assert eventually(lambda: (state(campaign, "wamid.A") or ("",))[0] == "failed")
    assert state(campaign, "wamid.A")[:2] == ("failed", "131026")
    later = meta_status("wamid.A", "read", 1_750_000_200)
    assert post(web, "meta", later, signed("meta", later)).status_code == 200
    time.sleep(0.3)
    assert state(campaign, "wamid.A")[0] == "failed"  # failed is final


def test_a_receipt_that_comes_before_the_send_is_recorded_is_matched_when_it_is(web, campaign):
    campaign.add(1)
    body = meta_status("wamid.EARLY", "delivered", 1_750_000_000)
    assert post(web, "meta", body, signed("meta", body)).status_code == 200
    assert eventually(lambda: state(campaign, "wamid.EARLY"))[4:] == (None, None)
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, http_status, message_id)"
        " VALUES ('campaign_master_1', 1, 1, 'sent', 200, 'wamid.EARLY')"
    )
    assert eventually(lambda: state(campaign, "wamid.EARLY")[5] == 1)
    assert state(campaign, "wamid.EARLY")[4:] == ("campaign_master_1", 1)
    assert campaign.query("SELECT campaign_table, row_id FROM delivery_receipts") == (("campaign_master_1", 1),)


def test_a_receipt_for_a_message_matched_before_is_tied_to_its_row(web, campaign):
    campaign.add(1)
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, http_status, message_id)"
        " VALUES ('campaign_master_1', 1, 1, 'sent', 200, 'wamid.LATE')"
    )
    delivered = meta_status("wamid.LATE", "delivered", 1_750_000_000)
    assert post(web, "meta", delivered, signed("meta", delivered)).status_code == 200
    assert eventually(lambda: (state(campaign, "wamid.LATE") or (None,) * 6)[5] == 1)
    read = meta_status("wamid.LATE", "read", 1_750_000_060)
    assert post(web, "meta", read, signed("meta", read)).status_code == 200
    tied = "SELECT status, campaign_table, row_id FROM delivery_receipts ORDER BY status"
    expected = (("delivered", "campaign_master_1", 1), ("read", "campaign_master_1", 1))
    assert eventually(lambda: campaign.query(tied) == expected), campaign.query(tied)


@pytest.mark.parametrize(
    "dialect,stop_fixture",
    [
        ("meta", "meta_message_text"),
        ("meta", "meta_message_button"),
        ("waha", "waha_message"),
        ("gowa", "gowa_message"),
    ],
)
def test_an_opt_out_reply_is_honoured_from_the_next_claimed_batch(web, campaign, build, mock, dialect, stop_fixture):
    producer, consumer = build
    ids = campaign.add(4, phone=lambda i: "6281234567890" if i == 0 else f"62812{i:08d}")
    body = body_of(stop_fixture)
    assert post(web, dialect, body, signed(dialect, body)).status_code == 200
    assert eventually(lambda: campaign.query("SELECT phone, source FROM opt_outs")) == (("6281234567890", dialect),)
    producer().loop()
    drain(consumer())
    states = campaign.states()
    assert states[ids[0]] == FAILED and campaign.failure_reasons()[ids[0]] == "opted out"
    assert mock.stats()["requests"] == 1  # the other odd row; the opted-out one never went out
    assert states[ids[2]] == SENT


def test_start_takes_a_phone_off_the_list(web, campaign):
    stop_body = body_of("meta_message_text")
    assert post(web, "meta", stop_body, signed("meta", stop_body)).status_code == 200
    assert eventually(lambda: campaign.query("SELECT phone FROM opt_outs"))
    start_body = stop_body.replace(b'"body": "STOP"', b'"body": "  start "')
    assert post(web, "meta", start_body, signed("meta", start_body)).status_code == 200
    assert eventually(lambda: not campaign.query("SELECT phone FROM opt_outs"))


def test_receipt_times_are_stored_right_whatever_the_sessions_time_zone(campaign, table_for, settings_for):
    table = table_for(settings_for())
    table._execute("SET time_zone = '+07:00'")
    ReceiptStore(table).add("meta", [Receipt("wamid.TZ", "delivered", 1_750_857_386.5)])
    seconds = campaign.query(
        "SELECT UNIX_TIMESTAMP(event_at), UNIX_TIMESTAMP(s.delivered_at) FROM delivery_receipts r"
        " JOIN message_states s USING (message_id)"
    )
    assert [float(value) for value in seconds[0]] == [1_750_857_386.5, 1_750_857_386.5]


def test_the_frequent_match_looks_at_recent_states_and_the_full_one_at_all(campaign, table_for, settings_for):
    """Receipts for messages other systems sent never match: the look every
    2 s covers states changed in the last minutes, the one every 10 min the rest."""
    store = ReceiptStore(table_for(settings_for()))
    campaign.query(
        "INSERT INTO message_states (message_id, status, updated_at)"
        " VALUES ('wamid.OLD', 'delivered', NOW() - INTERVAL 1 HOUR)"
    )
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, http_status, message_id)"
        " VALUES ('campaign_master_1', 7, 1, 'sent', 200, 'wamid.OLD')"
    )
    assert store.match(15) == 0
    assert store.match() == 1
    assert campaign.query("SELECT row_id FROM message_states") == ((7,),)


def test_the_frequent_match_reads_recent_unmatched_receipts_only(campaign, table_for, settings_for):
    """Receipts for other systems' messages never match and pile up: the
    look every 2 s must not read them all (20,000 here, two days old), nor
    every send of ours (20,000 more)."""
    table = table_for(settings_for())
    store = ReceiptStore(table)
    foreign = "('meta', 'wamid.FOREIGN{}', 'delivered', NOW() - INTERVAL 2 DAY)"
    sent = "('campaign_master_1', {0}, 1, 'sent', 200, 'wamid.SENT{0}')"  # and as many sends of ours
    with campaign.connection.cursor() as cursor:
        for first in range(0, 20_000, 5_000):
            values = ", ".join(foreign.format(n) for n in range(first, first + 5_000))
            cursor.execute(f"INSERT INTO delivery_receipts (gateway, message_id, status, received_at) VALUES {values}")
            values = ", ".join(sent.format(n) for n in range(first + 100, first + 5_100))
            cursor.execute(
                "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, http_status, message_id)"
                f" VALUES {values}"
            )
        cursor.execute("ANALYZE TABLE delivery_receipts, delivery_attempts")
    campaign.query("INSERT INTO delivery_receipts (gateway, message_id, status) VALUES ('meta', 'wamid.OURS', 'read')")
    campaign.query(
        "INSERT INTO delivery_attempts (campaign_table, row_id, attempt, outcome, http_status, message_id)"
        " VALUES ('campaign_master_1', 9, 1, 'sent', 200, 'wamid.OURS')"
    )

    def entries_read() -> int:
        status = dict(table._execute("SHOW SESSION STATUS LIKE 'Handler_read%%'"))
        return sum(int(value) for name, value in status.items() if name != "Handler_read_rnd_deleted")

    before = entries_read()
    store.match(15)
    assert entries_read() - before < 1_000
    tied = "SELECT message_id, campaign_table, row_id FROM delivery_receipts WHERE row_id IS NOT NULL"
    assert campaign.query(tied) == (("wamid.OURS", "campaign_master_1", 9),)


def test_a_database_from_before_gets_the_indexes_receipts_are_matched_by(campaign, table_for, settings_for):
    campaign.query("ALTER TABLE delivery_receipts DROP INDEX unmatched")
    campaign.query("ALTER TABLE delivery_attempts DROP INDEX by_message")
    ReceiptStore(table_for(settings_for())).create_tables()
    indexes = campaign.query(
        "SELECT table_name, index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index)"
        " FROM information_schema.statistics WHERE table_schema = DATABASE()"
        " AND index_name IN ('unmatched', 'by_message') GROUP BY table_name, index_name"
    )
    assert set(indexes) >= {
        ("delivery_receipts", "unmatched", "row_id,received_at"),
        ("delivery_attempts", "by_message", "message_id"),
    }


def test_prometheus_counts_receipts_by_status_and_refusals(web, campaign):
    body = body_of("meta_statuses")
    assert post(web, "meta", body, {}).status_code == 401
    assert post(web, "meta", body, signed("meta", body)).status_code == 200
    assert eventually(lambda: len(receipts(campaign)) == 4)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = requests.get(f"{web}/metrics", timeout=5).text
        if 'campaign_receipts_total{gateway="meta",status="failed"} 1.0' in text:
            break
        time.sleep(0.05)
    for status in ("sent", "delivered", "read", "failed"):
        assert f'campaign_receipts_total{{gateway="meta",status="{status}"}} 1.0' in text
    assert 'campaign_webhooks_refused_total{gateway="meta",reason="missing"} 1.0' in text


def test_the_receiver_counts_what_it_takes_and_refuses_and_answers_503_without_redis(secrets_env, campaign):
    with served(("common.webhooks", secrets_env)) as (url,):
        body = body_of("meta_statuses")
        assert post(url, "meta", body, {}).status_code == 401
        assert post(url, "meta", body, signed("meta", body)).status_code == 200
        text = requests.get(f"{url}/metrics", timeout=5).text
        assert 'campaign_receipts_total{gateway="meta",status="received"} 4.0' in text
        assert 'campaign_webhooks_refused_total{gateway="meta",reason="missing"} 1.0' in text
        assert requests.get(f"{url}/health", timeout=5).json() == {"ok": True}


def test_the_receiver_answers_503_while_redis_is_away_and_takes_the_retry(receiver_env, own_redis, campaign):
    with served(("common.webhooks", receiver_env)) as (url,):
        kept = meta_status("wamid.KEPT", "delivered", 1_750_000_000)
        assert post(url, "meta", kept, signed("meta", kept)).status_code == 200
        own_redis.kill()
        away = meta_status("wamid.AWAY", "delivered", 1_750_000_000)
        answer = post(url, "meta", away, signed("meta", away))
        assert answer.status_code == 503 and "send it again" in answer.text  # the gateway retries it
        own_redis.start()
        assert post(url, "meta", away, signed("meta", away)).status_code == 200
        inbox = own_redis.client().lrange("webhook:inbox", 0, -1)  # this Redis keeps nothing across a restart
        assert [json.loads(entry)["receipts"][0]["message_id"] for entry in inbox] == ["wamid.AWAY"]


def test_the_receiver_answers_503_not_silence_when_redis_refuses_its_credentials(receiver_env, own_redis, campaign):
    with served(("common.webhooks", receiver_env)) as (url,):
        admin = own_redis.client()
        admin.config_set("requirepass", "rotated")  # a password change the receiver was not told of
        admin.execute_command("AUTH", "rotated")
        admin.client_kill_filter(_type="normal", skipme=True)  # its connection must log in again
        body = meta_status("wamid.ROTATED", "delivered", 1_750_000_000)
        answer = post(url, "meta", body, signed("meta", body))
        assert answer.status_code == 503  # the gateway sends it again later


def wait_until_held(url: str) -> None:
    """Until a script holds Redis: a PING gets no answer within 50 ms."""
    probe = redis.Redis.from_url(url, socket_timeout=0.05)
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            probe.ping()
            time.sleep(0.01)
    except redis.TimeoutError:
        return
    finally:
        probe.close()
    raise AssertionError("the script never held Redis")


def test_a_stopped_receiver_answers_the_requests_it_was_writing(receiver_env, own_redis, campaign):
    process, url = serve(receiver_env, "common.webhooks")
    body = meta_status("wamid.LATE", "delivered", 1_750_000_000)
    sleeper = threading.Thread(target=own_redis.client().eval, args=(BUSY_SCRIPT, 0, 1.5))
    try:
        sleeper.start()  # a script holds Redis, and so the RPUSH, for 1.5 s
        wait_until_held(own_redis.url)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post, url, "meta", body, signed("meta", body))
            time.sleep(0.5)
            assert not answer.done()  # still waiting on Redis
            process.send_signal(signal.SIGTERM)
            assert answer.result(timeout=10).status_code == 200
        _, err = process.communicate(timeout=10)  # it exits on that one signal; a second would kill it
        assert process.returncode == 0, err[-500:]
        assert len(own_redis.client().lrange("webhook:inbox", 0, -1)) == 1
    finally:
        sleeper.join()
        if process.poll() is None:  # a failed assertion left it running
            process.kill()
            process.wait()
