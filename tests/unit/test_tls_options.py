"""TLS options in DATABASE_URL and REDIS_URL: how they are read, what is
refused at start-up with one line, and which failures are configuration
errors rather than outages. Certificates come from the test's own CA."""

import ssl
from urllib.parse import quote

import pymysql
import pytest
import redis

from common.errors import ConfigError, ServiceUnavailable
from common.queue.jobs import redis_failure
from common.settings import check_redis_url, parse_database_url, redis_tls_context, redis_where
from common.store.campaign import tls_options, translate_error
from common.testing.services import make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


def mysql_url(query: str) -> str:
    return f"mysql://camp:s%40cret@db.example:3306/campaign?{query}"


def test_ssl_mode_and_ca_read_the_same_in_mysql_and_underscore_spellings(certs):
    dashes = parse_database_url(mysql_url(f"ssl-mode=verify_identity&ssl-ca={certs.ca}"))
    underscores = parse_database_url(mysql_url(f"ssl_mode=VERIFY_IDENTITY&ssl_ca={certs.ca}"))
    assert dashes == underscores
    assert (dashes.ssl_mode, dashes.ssl_ca) == ("VERIFY_IDENTITY", str(certs.ca))


def test_without_tls_options_the_connection_is_preferred_as_the_mysql_client_does():
    target = parse_database_url("mysql://u:p@h:3306/db")
    assert target.ssl_mode == "PREFERRED" and tls_options(target) == {}


def test_a_ca_without_a_mode_is_checked_against_and_a_client_certificate_alone_requires_tls(certs):
    assert parse_database_url(mysql_url(f"ssl-ca={certs.ca}")).ssl_mode == "VERIFY_CA"
    alone = parse_database_url(mysql_url(f"ssl-cert={certs.client_cert}&ssl-key={certs.client_key}"))
    assert alone.ssl_mode == "REQUIRED"


@pytest.mark.parametrize(
    "mode,verify,hostname",
    [
        ("REQUIRED", ssl.CERT_NONE, False),
        ("VERIFY_CA", ssl.CERT_REQUIRED, False),
        ("VERIFY_IDENTITY", ssl.CERT_REQUIRED, True),
    ],
)
def test_each_mode_gives_pymysql_a_context_that_checks_as_much_as_it_says(certs, mode, verify, hostname):
    ca = f"&ssl-ca={certs.ca}" if mode != "REQUIRED" else ""
    context = tls_options(parse_database_url(mysql_url(f"ssl-mode={mode}{ca}")))["ssl"]
    assert (context.verify_mode, context.check_hostname) == (verify, hostname)


def test_disabled_turns_tls_off_even_when_the_server_offers_it():
    assert tls_options(parse_database_url(mysql_url("ssl-mode=DISABLED"))) == {"ssl_disabled": True}


@pytest.mark.parametrize(
    "query,text",
    [
        ("sslmode=require", "unknown option 'sslmode'"),
        ("ssl-mode=REQUIRED&ssl-mode=REQUIRED", "twice"),
        ("ssl-mode=VERIFY", "ssl-mode must be one of DISABLED, PREFERRED"),
        ("ssl-mode=DISABLED&ssl-ca={ca}", "ssl-ca with ssl-mode=DISABLED"),
        ("ssl-mode=PREFERRED&ssl-cert={cert}", "ssl-cert with ssl-mode=PREFERRED"),
        ("ssl-mode=REQUIRED&ssl-ca={ca}", "checks nothing: use VERIFY_CA"),
        ("ssl-mode=REQUIRED&ssl-key={key}", "ssl-key without ssl-cert"),
        ("ssl-ca=/nowhere/ca.pem", "cannot read the CA /nowhere/ca.pem (No such file or directory)"),
        ("ssl-ca={key}", "cannot use the CA"),
        ("ssl-cert={ca}&ssl-key={key}", "cannot use the client certificate"),
    ],
)
def test_database_url_tls_mistakes_are_refused_with_one_line(certs, query, text):
    query = query.format(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        parse_database_url(mysql_url(query))
    assert text in str(refused.value) and "\n" not in str(refused.value)
    assert "s@cret" not in str(refused.value)


def test_describe_names_the_mode_and_never_the_password(certs):
    target = parse_database_url(mysql_url(f"ssl-mode=VERIFY_CA&ssl-ca={certs.ca}"))
    assert target.describe() == "mysql://camp@db.example:3306/campaign?ssl-mode=VERIFY_CA"
    assert "s@cret" not in repr(target)


def rediss(certs, extra: str = "") -> str:
    return f"rediss://:pw@127.0.0.1:6380/0?ssl_ca_certs={quote(str(certs.ca))}{extra}"


def test_a_rediss_url_with_a_ca_and_client_certificate_is_taken(certs):
    url = rediss(certs, f"&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}")
    assert check_redis_url(url) == url
    assert redis_tls_context(url).verify_mode == ssl.CERT_REQUIRED
    assert redis_tls_context("redis://127.0.0.1:6379/0") is None


@pytest.mark.parametrize(
    "url,text",
    [
        ("rediss://h:6380/0?ssl_ca_cert=/x.pem", "unknown option 'ssl_ca_cert'"),
        ("redis://h:6379/0?ssl_ca_certs={ca}", "gives ssl_ca_certs but is not a rediss:// URL"),
        ("rediss://h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of none, optional, required"),
        ("rediss://h:6380/0?ssl_ca_certs=/nowhere/ca.pem", "cannot read the CA /nowhere/ca.pem"),
        ("rediss://h:6380/0?ssl_keyfile={key}", "ssl_keyfile without ssl_certfile"),
    ],
)
def test_redis_url_tls_mistakes_are_refused_with_one_line(certs, url, text):
    with pytest.raises(ConfigError, match="REDIS_URL") as refused:
        check_redis_url(url.format(ca=certs.ca, key=certs.client_key))
    assert text in str(refused.value)


def test_a_redis_url_is_shown_without_its_password_or_options(certs):
    assert redis_where(rediss(certs)) == "rediss://127.0.0.1:6380/0"


def wrapped(outer: Exception, inner: OSError) -> Exception:
    """`outer` raised while handling `inner`, as redis-py and pymysql raise them (inner is its context)."""
    try:
        raise inner
    except OSError:
        try:
            raise outer
        except Exception as exc:
            return exc


def verify_failed() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


def test_a_redis_certificate_the_ca_does_not_vouch_for_is_a_configuration_error():
    failure = redis_failure("connect", wrapped(redis.ConnectionError("Error 1 connecting"), verify_failed()))
    assert isinstance(failure, ConfigError)
    assert "unable to get local issuer certificate" in str(failure) and "not signed by the CA we trust" in str(failure)


def test_a_tls_connection_cut_mid_handshake_is_an_outage_to_wait_out():
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    failure = redis_failure("connect", wrapped(redis.ConnectionError("Error 8 connecting"), eof))
    assert isinstance(failure, ServiceUnavailable)


def test_mysql_tls_refusals_are_configuration_errors_and_name_no_password(certs):
    target = parse_database_url(mysql_url(f"ssl-ca={certs.ca}"))
    refused = pymysql.OperationalError(2003, "Can't connect to MySQL server on 'db.example' (verify failed)")
    refused.original_exception = verify_failed()  # type: ignore[attr-defined]
    failure = translate_error(refused, target)
    assert isinstance(failure, ConfigError) and "ssl-ca" in str(failure) and "s@cret" not in str(failure)
    no_tls = translate_error(pymysql.OperationalError(2026, "SSL is required but the server lacks it"), target)
    assert isinstance(no_tls, ConfigError) and "offers no TLS" in str(no_tls)
    down = translate_error(pymysql.OperationalError(2003, "Can't connect to MySQL server (timed out)"), target)
    assert isinstance(down, ServiceUnavailable)
