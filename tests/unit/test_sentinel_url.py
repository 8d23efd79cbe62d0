"""Sentinel URLs: every sentinel, the service, the db and the secrets read
right; a malformed one fails with one line."""

import pytest

from common.errors import ConfigError
from common.queue.sentinel import SentinelTarget, parse_sentinel_url


def test_every_part_of_a_sentinel_url_is_read():
    target = parse_sentinel_url("redis+sentinel://app:s%40cret@h1:26379,h2:26380,h3/mymaster/2?sentinel_password=sp")
    assert target == SentinelTarget((("h1", 26379), ("h2", 26380), ("h3", 26379)), "mymaster", 2, "app", "s@cret", "sp")
    assert "s@cret" not in repr(target) and "sp" not in target.describe()
    assert target.describe() == "sentinels h1:26379,h2:26380,h3:26379, service mymaster, db 2"


def test_tls_options_come_with_rediss_sentinel_only():
    target = parse_sentinel_url("rediss+sentinel://h1:26379/mymaster?ssl_ca_certs=/ca.pem&ssl_check_hostname=true")
    assert target.db == 0 and target.tls == {"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": True}
    with pytest.raises(ConfigError, match="not a rediss"):
        parse_sentinel_url("redis+sentinel://h1:26379/mymaster?ssl_ca_certs=/ca.pem")


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+sentinel://h1:26379", "names the service"),
        ("redis+sentinel://h1:26379/mymaster/zero", "names the service"),
        ("redis+sentinel://h1:port/mymaster", "is not host:port"),
        ("redis+sentinel://h1:26379,/mymaster", "is not host:port"),
        ("redis+sentinel://h1:26379/mymaster?timeout=3", "'timeout' is not one of"),
        ("redis://h1:6379/0", "looks like"),
    ],
)
def test_a_malformed_sentinel_url_fails_with_one_line(url, message):
    with pytest.raises(ConfigError, match=message):
        parse_sentinel_url(url)
