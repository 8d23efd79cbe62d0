import pytest

from common.errors import ConfigError
from common.settings import MySQLTarget, Partition, Settings, identifier, parse_database_url

TARGET = MySQLTarget("127.0.0.1", 3306, "u", "p", "db")


def settings(**overrides):
    return Settings(**{"database": TARGET, "redis_url": "redis://x", "partition": Partition(1, 2), **overrides})


@pytest.mark.parametrize("name", ["campaign_master_1", "_t", "A1"])
def test_plain_identifiers_are_accepted(name):
    assert identifier(name, "table") == name


@pytest.mark.parametrize("name", ["", "1abc", "t; DROP TABLE x", "a-b", "`t`", "a" * 65, "t.x"])
def test_names_that_are_not_identifiers_are_refused(name):
    with pytest.raises(ConfigError, match="not a plain identifier"):
        settings(table=name)


def test_column_names_are_checked_too():
    with pytest.raises(ConfigError, match="phone column"):
        settings(phone_column="column1 OR 1=1")


def test_database_url_is_parsed_with_an_encoded_password():
    target = parse_database_url("mysql://camp:p%40ss@db.local:3307/campaign")
    assert (target.host, target.port, target.user, target.password, target.database) == (
        "db.local",
        3307,
        "camp",
        "p@ss",
        "campaign",
    )
    assert "p@ss" not in repr(target) and "p@ss" not in target.describe()


def test_database_url_accepts_a_unix_socket():
    assert parse_database_url("mysql://root@/test?unix_socket=/run/mysqld.sock").unix_socket == "/run/mysqld.sock"


@pytest.mark.parametrize("url", ["postgres://u@h/db", "mysql://u@h", "mysql://u@h:notaport/db", "nonsense"])
def test_malformed_database_urls_are_refused(url):
    with pytest.raises(ConfigError):
        parse_database_url(url)


def test_whatsapp_url_must_be_http():
    with pytest.raises(ConfigError, match="WHATSAPP_URL"):
        settings(whatsapp_url="localhost:8080")


def test_lease_must_outlast_a_few_renewals():
    with pytest.raises(ConfigError, match="LEASE_SECONDS"):
        settings(lease_seconds=0.5)


@pytest.mark.parametrize("index,of", [(2, 2), (-1, 2), (0, 0)])
def test_partition_must_be_in_range(index, of):
    with pytest.raises(ConfigError):
        Partition(index, of)


def test_secrets_are_not_in_the_settings_repr():
    text = repr(settings(whatsapp_token="sekret-token", redis_url="redis://:redispw@h:6379/0"))
    assert "sekret-token" not in text and "redispw" not in text
