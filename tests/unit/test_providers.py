"""Each provider's dialect: the request it builds and how it reads answers."""

import base64
import json

import pytest

from common.delivery import providers
from common.delivery.providers.gowa import TIMELOCK_DELAY
from common.delivery.routing import breaker_outcome
from common.delivery.sender import Message, Outcome
from common.errors import ConfigError
from common.settings import MySQLTarget, Partition, Settings

MESSAGE = Message(7, "628100000007", "campaign_master_1:7")


def settings(**overrides) -> Settings:
    values = dict(
        database=MySQLTarget("h", 3306, "u", "", "d"),
        redis_url="redis://x",
        partition=Partition(1, 2),
        whatsapp_url="http://gateway:3000",
        whatsapp_token="tok",
        text="Hello!",
        meta_phone_number_id="1055",
        waha_api_key="key",
        gowa_username="user",
        gowa_password="pw",
    )
    values.update(overrides)
    return Settings(**values)


def built(name, **overrides):
    provider = providers.build(name, settings(**overrides))
    body, headers = provider.request(MESSAGE)
    return provider, json.loads(body), headers


def test_every_provider_module_is_listed():
    assert providers.names() == ["gowa", "meta", "waha", "webhook"]


def test_every_request_carries_the_idempotency_key():
    for name in providers.names():
        assert built(name)[2] == {"Idempotency-Key": "campaign_master_1:7"}


def test_meta_posts_to_the_phone_number_and_reads_the_wamid():
    provider, body, _ = built("meta", text=None)
    assert provider.url == "https://graph.facebook.com/v21.0/1055/messages"
    assert provider.headers["Authorization"] == "Bearer tok"
    assert body == {
        "messaging_product": "whatsapp",
        "to": "628100000007",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }
    answer = provider.read(200, {}, '{"messages":[{"id":"wamid.ABC"}]}')
    assert answer.outcome is Outcome.SENT and answer.message_id == "wamid.ABC"


def test_meta_can_send_a_text():
    assert built("meta")[1]["text"] == {"body": "Hello!"}


def meta_error(code: int, status: int = 400):
    provider = providers.build("meta", settings())
    return provider.read(status, {}, json.dumps({"error": {"message": "m", "code": code}}))


@pytest.mark.parametrize("code", [130429, 4, 80007, 1, 2, 131000, 131016])
def test_meta_throttling_and_transient_codes_are_retried(code):
    assert meta_error(code).outcome is Outcome.RETRY


def test_meta_pair_rate_limit_holds_back_only_that_row_for_a_minute():
    answer = meta_error(131056)
    assert answer.outcome is Outcome.RETRY and answer.per_row and answer.retry_after == 60
    assert breaker_outcome(answer) == "ok"  # not a sign the sender is failing


@pytest.mark.parametrize("code", [131026, 100, 131047, 131030, 132000, 132001, 132012])
def test_meta_recipient_and_template_codes_fail_the_row(code):
    assert meta_error(code, status=500).outcome is Outcome.FAILED  # the code decides, not the status


@pytest.mark.parametrize("code", [190, 0, 131048, 131031, 368, 132015, 132016])
def test_meta_account_codes_stop_the_sender(code):
    assert meta_error(code).outcome is Outcome.SENDER_DOWN


def test_meta_needs_its_phone_number_id_and_token():
    with pytest.raises(ConfigError, match="META_PHONE_NUMBER_ID"):
        providers.build("meta", settings(meta_phone_number_id=None))


def test_waha_sends_text_to_a_chat_id_with_its_api_key():
    provider, body, _ = built("waha")
    assert provider.url == "http://gateway:3000/api/sendText"
    assert provider.headers["X-Api-Key"] == "key"
    assert body == {"session": "default", "chatId": "628100000007@c.us", "text": "Hello!"}
    answer = provider.read(201, {}, '{"id": {"_serialized": "true_628100000007@c.us_3EB0"}}')
    assert answer.outcome is Outcome.SENT and answer.message_id == "3EB0"  # the stanza id, as acks name it


def test_gowa_sends_with_basic_auth_and_reads_its_message_id():
    provider, body, _ = built("gowa")
    assert provider.url == "http://gateway:3000/send/message"
    assert provider.headers["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert body == {"phone": "628100000007@s.whatsapp.net", "message": "Hello!"}
    answer = provider.read(200, {}, '{"code":"SUCCESS","results":{"message_id":"3EB0X"}}')
    assert answer.outcome is Outcome.SENT and answer.message_id == "3EB0X"


def test_gowa_timelock_waits_long_instead_of_hammering():
    provider = providers.build("gowa", settings())
    answer = provider.read(429, {}, '{"code":"WA_REACHOUT_TIMELOCK","message":"wait"}')
    assert answer.outcome is Outcome.RETRY and answer.retry_after == TIMELOCK_DELAY


@pytest.mark.parametrize("name", ["waha", "gowa"])
def test_text_gateways_need_a_text(name):
    with pytest.raises(ConfigError, match="WHATSAPP_TEXT"):
        providers.build(name, settings(text=None))


def test_an_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="WHATSAPP_PROVIDER"):
        settings(provider="twilio")


def test_meta_fills_the_template_body_parameters_in_param_order():
    provider = providers.build("meta", settings(text=None, params=("column4", "column2")))
    message = Message(7, "628100000007", "campaign_master_1:7", {"column2": "Ana", "column4": "50%"})
    body = json.loads(provider.request(message)[0])
    assert body["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "50%"}, {"type": "text", "text": "Ana"}]}
    ]


@pytest.mark.parametrize("name,field", [("waha", "text"), ("gowa", "message"), ("meta", "text")])
def test_text_placeholders_take_the_rows_values(name, field):
    provider = providers.build(name, settings(text="Halo {column2}!"))
    body = json.loads(provider.request(Message(7, "628100000007", "k", {"column2": "Budi"}))[0])
    assert (body[field]["body"] if name == "meta" else body[field]) == "Halo Budi!"


def test_producers_read_the_columns_that_params_and_placeholders_name():
    assert settings(text="Hi {name} {code}", params=("code", "city")).message_columns == ("code", "city", "name")
    with pytest.raises(ConfigError, match="placeholder"):
        settings(text="Hi {user.name}")
    with pytest.raises(ConfigError, match="--param"):
        settings(params=("column2; DROP TABLE x",))


def test_a_rows_own_template_or_text_wins_over_the_campaigns():
    own = dict(template_column="tpl", text_column="txt")
    row = lambda **params: Message(7, "628100000007", "k", params)  # noqa: E731
    meta = providers.build("meta", settings(text=None, **own))
    assert json.loads(meta.request(row(tpl="promo_nov"))[0])["template"]["name"] == "promo_nov"
    assert json.loads(meta.request(row(tpl=""))[0])["template"]["name"] == "hello_world"  # NULL: the campaign's
    as_text = json.loads(meta.request(row(txt="Hi {not a placeholder}", tpl="promo_nov"))[0])
    assert as_text["type"] == "text" and as_text["text"]["body"] == "Hi {not a placeholder}"  # sent as it is
    webhook = providers.build("webhook", settings(**own))
    assert json.loads(webhook.request(row(tpl="promo_nov"))[0])["template"]["name"] == "promo_nov"
    for name, field in (("waha", "text"), ("gowa", "message")):
        provider = providers.build(name, settings(text="Campaign {tpl}", **own))
        assert json.loads(provider.request(row(txt="Own text"))[0])[field] == "Own text"
        assert json.loads(provider.request(row(tpl="x"))[0])[field] == "Campaign x"
    assert settings(**own, params=("column2",)).message_columns == ("column2", "tpl", "txt")
    with pytest.raises(ConfigError, match="TEMPLATE_COLUMN"):
        settings(template_column="tpl; DROP")


@pytest.mark.parametrize(
    "answer,message_id",
    [
        ({"id": "true_62812@c.us_3EB0"}, "3EB0"),  # GOWS
        ({"id": {"_serialized": "true_62812@c.us_3EB1"}}, "3EB1"),  # WEBJS
        ({"key": {"id": "3EB0NOWEB"}, "message": {}}, "3EB0NOWEB"),  # NOWEB
        ({"id": 42}, "42"),
        ({"id": {"_serialized": ["x"]}}, None),
    ],
)
def test_waha_reads_the_message_id_of_every_engine(answer, message_id):
    provider = providers.build("waha", settings())
    assert provider.read(201, {}, json.dumps(answer)).message_id == message_id
