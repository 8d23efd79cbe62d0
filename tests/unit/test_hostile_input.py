"""Property-based: whatever a gateway answers, a row holds or Redis gives back,
reading it ends in a defined outcome and never raises."""

import datetime
import json
import math
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.delivery import providers
from common.delivery.providers._json import MESSAGE_ID_LENGTH
from common.delivery.receipts import DIALECTS, EARLIEST, LATEST, RANK
from common.delivery.sender import MAX_RETRY_AFTER, Outcome, SendResult, parse_retry_after
from common.delivery.sticky import ranking
from common.errors import ConfigError
from common.ops.webhooks import WebhookSecrets, delivery
from common.phones import InvalidPhone, normalise_phone
from common.process.consumer import retry_delay
from common.queue.inbox import decode
from common.queue.jobs import MAX_ATTEMPTS_KEPT, decode_job
from common.queue.sentinel import is_sentinel_url, parse_sentinel_url
from common.settings import MySQLTarget, Partition, Settings, check_redis_url
from common.store.campaign import as_text, storable
from tests.unit.test_providers import settings as provider_settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Shapes gateways answer with, so generated bodies reach the code that reads ids and error codes.
answer_shapes = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries({"id": json_values}), max_size=2)}),
    st.fixed_dictionaries({"error": st.fixed_dictionaries({"code": json_values, "message": json_values})}),
    st.fixed_dictionaries({"id": json_values, "key": json_values}),
    st.fixed_dictionaries({"code": json_values, "results": json_values}),
    json_values,
)
retry_after_values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(
        [
            "1e999",
            "-1e999",
            "inf",
            "nan",
            "",
            " ",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 99 Foo 0000 99:99:99 GMT",
        ]
    ),
    st.datetimes(timezones=st.just(datetime.UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.text(max_size=40),
)


def bodies():
    deep = st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth)
    raw = st.binary(max_size=200).map(lambda data: data.decode("utf-8", "replace"))
    return st.one_of(answer_shapes.map(json.dumps), deep, raw, st.text(max_size=200))


def assert_defined(result: SendResult) -> None:
    assert isinstance(result.outcome, Outcome)
    if result.retry_after is not None:
        assert math.isfinite(result.retry_after) and 0 <= result.retry_after <= MAX_RETRY_AFTER
    if result.message_id is not None:
        assert isinstance(result.message_id, str) and 0 < len(result.message_id) <= MESSAGE_ID_LENGTH
    assert isinstance(result.detail, str)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(providers.names()), status=st.integers(100, 999), retry_after=retry_after_values, body=bodies()
)
def test_every_provider_reads_any_answer_into_a_defined_outcome(name, status, retry_after, body):
    provider = providers.build(name, provider_settings())
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    assert_defined(provider.read(status, headers, body))


@given(retry_after_values)
def test_retry_after_is_none_or_finite_and_at_most_a_day(value):
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER)


@given(attempt=st.integers(1, 10**400), base=st.floats(0, 3600), retry_after=retry_after_values)
def test_a_retry_is_due_within_a_day_whatever_the_attempt_count(attempt, base, retry_after):
    delay = retry_delay(attempt, base, parse_retry_after(retry_after))
    assert math.isfinite(delay) and 0 <= delay <= MAX_RETRY_AFTER


column_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**64 - 1),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.text(max_size=20).map(lambda text: f"  {text}  "),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.timedeltas(),
    st.frozensets(st.text(max_size=5), max_size=3),
)


@given(column_values)
def test_a_phone_column_of_any_type_is_text_or_fails_its_row_with_a_reason(value):
    text = as_text(value)
    assert text is None or isinstance(text, str)
    try:
        phone = normalise_phone(text)
    except InvalidPhone as exc:
        assert str(exc)
    else:
        assert phone.isdigit()


def test_numbers_become_the_digits_a_phone_check_reads():
    assert as_text(6281234567890) == "6281234567890"
    assert as_text(Decimal("6281234567890")) == "6281234567890"
    assert as_text(Decimal("6.28123456789E+12")) == "6281234567890"
    assert as_text(6281234567890.0) == "6281234567890"
    assert as_text(b"+62 812-3456-7890") == "+62 812-3456-7890"
    assert as_text(datetime.date(2026, 12, 7)) == "2026-12-07"


@given(st.text(), st.integers(1, 300))
def test_text_for_our_columns_is_valid_utf8_and_fits(text, length):
    stored = storable(text, length)
    assert len(stored) <= length
    stored.encode("utf-8")  # a lone surrogate would raise here


@given(
    st.one_of(
        st.text(max_size=100),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {"phone": json_values, "attempts": json_values, "sent": json_values, "params": json_values}
        ).map(json.dumps),
        st.just('{"phone": "6281", "attempts": 1e999}'),
    )
)
def test_any_job_payload_read_back_from_redis_is_a_job_or_none(raw):
    job = decode_job(7, raw)
    if job is not None:
        assert job.phone is None or isinstance(job.phone, str)
        assert 0 <= job.attempts <= MAX_ATTEMPTS_KEPT
        assert all(isinstance(value, str) for value in job.params.values())
        json.loads(job.encode())


# Webhook bodies: the dialects' envelopes with anything inside, and anything at all.
event_shapes = st.one_of(
    st.fixed_dictionaries(
        {
            "entry": st.lists(
                st.fixed_dictionaries(
                    {
                        "changes": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "value": st.fixed_dictionaries(
                                        {
                                            "statuses": st.lists(
                                                st.fixed_dictionaries(
                                                    {
                                                        "id": json_values,
                                                        "status": st.sampled_from(list(RANK)) | json_values,
                                                        "timestamp": json_values,
                                                        "errors": json_values,
                                                    }
                                                ),
                                                max_size=3,
                                            ),
                                            "messages": st.lists(
                                                st.fixed_dictionaries(
                                                    {
                                                        "from": json_values,
                                                        "id": json_values,
                                                        "type": st.sampled_from(["text", "button", "interactive"]),
                                                        "text": json_values,
                                                        "button": json_values,
                                                        "interactive": json_values,
                                                        "timestamp": json_values,
                                                    }
                                                ),
                                                max_size=2,
                                            ),
                                        }
                                    )
                                }
                            ),
                            max_size=2,
                        )
                    }
                ),
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["message.ack", "message", "message.any", "session.status"]),
            "timestamp": json_values,
            "payload": st.fixed_dictionaries(
                {
                    "id": json_values,
                    "ids": json_values,
                    "ack": st.integers(-2, 5) | json_values,
                    "fromMe": st.booleans() | json_values,
                    "is_from_me": st.booleans() | json_values,
                    "receipt_type": st.sampled_from(["delivered", "read", "read-self", "played"]) | json_values,
                    "from": json_values,
                    "body": json_values,
                    "timestamp": json_values,
                }
            ),
        }
    ),
    json_values,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(dialect=st.sampled_from(sorted(DIALECTS)), body=st.one_of(event_shapes.map(json.dumps), bodies()))
def test_any_webhook_body_reads_as_events_a_row_can_hold_or_none(dialect, body):
    events = DIALECTS[dialect].read(body.encode("utf-8", "surrogatepass"))
    if events is None:
        return
    for receipt in events.receipts:
        assert isinstance(receipt.message_id, str) and 0 < len(receipt.message_id) <= MESSAGE_ID_LENGTH
        assert receipt.status in RANK
        assert receipt.event_at is None or EARLIEST <= receipt.event_at <= LATEST
        assert receipt.error_code is None or isinstance(receipt.error_code, str)
    for reply in events.replies:
        assert reply.phone.isdigit() and 6 <= len(reply.phone) <= 15
        assert isinstance(reply.text, str) and len(reply.text) <= 255
        assert reply.event_at is None or EARLIEST <= reply.event_at <= LATEST


@settings(max_examples=200, deadline=None)
@given(
    dialect=st.sampled_from(sorted(DIALECTS)),
    headers=st.dictionaries(
        st.sampled_from(["X-Hub-Signature-256", "X-Webhook-Hmac", "X-Webhook-Hmac-Algorithm"]), st.text(max_size=200)
    ),
    body=st.binary(max_size=200),
)
def test_any_signature_header_is_a_verdict_and_only_the_right_one_passes(dialect, headers, body):
    verdict = DIALECTS[dialect].verify("secret", headers.get, body)
    assert verdict in ("ok", "missing", "wrong")
    assert verdict != "ok"  # nothing but the HMAC of this body with this secret passes


url_parts = st.sampled_from(
    [
        "redis+sentinel://",
        "rediss+sentinel://",
        "redis://",
        "rediss://",
        "unix://",
        "",
        ":",
        "@",
        ",",
        "/",
        "?",
        "&",
        "=",
        "%",
        "%zz",
        "[",
        "]",
        "h1",
        "127.0.0.1",
        "::1",
        "26379",
        "99999",
        "-1",
        "mymaster",
        "0",
        "x",
        "sentinel_password",
        "ssl_ca_certs",
        "ssl_check_hostname",
        "ssl_cert_reqs",
        "none",
        "\x00",
        "é",
        "\udcff",
    ]
)


@given(st.lists(url_parts, max_size=12).map("".join) | st.text(max_size=60))
def test_any_redis_url_is_taken_or_refused_with_one_line(url):
    """REDIS_URL, Sentinel shapes included: a checked URL or a ConfigError, never another exception."""
    try:
        assert check_redis_url(url) == url
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        if is_sentinel_url(url):
            target = parse_sentinel_url(url)
            assert target.sentinels and all(0 < port < 65536 for _, port in target.sentinels)
            assert (target.password or "\x00") not in target.describe()


@given(st.text(max_size=30))
def test_any_daily_limit_is_a_positive_count_per_sender_or_one_line(value):
    try:
        limits = Settings(
            database=MySQLTarget("h", 3306, "u", "", "d"),
            redis_url="redis://x",
            partition=Partition(1, 2),
            daily_limit=value,
        ).sender_daily_limits(1)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(limit is None or (isinstance(limit, int) and limit > 0) for limit in limits)


@settings(max_examples=200)
@given(
    name=st.sampled_from([*sorted(DIALECTS), "nonsense", "", "../meta"]),
    body=st.binary(max_size=300),
    signature=st.none() | st.text(max_size=80),
)
def test_any_webhook_request_gets_a_defined_answer_and_only_a_signed_one_an_entry(name, body, signature):
    """Whatever a stranger posts to /webhooks/<name>: 200, 400, 401, 403 or 404, never an exception."""
    secrets = WebhookSecrets("meta-secret", "verify", "waha-key", "gowa-secret")
    headers = {"X-Hub-Signature-256": signature, "X-Webhook-Hmac": signature}
    answer = delivery(secrets, name, headers.get, body, "192.0.2.1")
    assert answer.status in (200, 400, 401, 403, 404)
    assert answer.entry is None or answer.status == 200
    if answer.entry:
        assert decode(answer.entry) is not None  # the writer can read what the receiver keeps


@given(st.text(max_size=30), st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5, unique=True))
def test_any_phone_and_sender_names_rank_every_sender_once(phone, senders):
    order = ranking(senders, phone)
    assert sorted(order) == list(range(len(senders))) and order == ranking(senders, phone)
