"""The shared harness: schema.sql read statement by statement, database URLs."""

from common.settings import MySQLTarget, check_redis_url, parse_database_url
from common.store.schema import statements as schema_statements
from common.testing.services import RedisServer, database_url, make_certificates


def test_the_schema_splits_into_its_create_statements_whatever_its_comments_hold(tmp_path):
    statements = schema_statements()
    assert len(statements) == 8 and all(s.lstrip().startswith("CREATE TABLE") for s in statements)
    odd = tmp_path / "schema.sql"
    odd.write_text("-- a comment; with a semicolon;\nCREATE TABLE t (\n  v VARCHAR(5) DEFAULT ';'\n);\n")
    assert schema_statements(odd) == ["CREATE TABLE t (\n  v VARCHAR(5) DEFAULT ';'\n)"]


def test_a_database_url_reads_back_as_the_same_target():
    target = MySQLTarget("127.0.0.1", 3307, "us:er", "p@ss/word", "campaign")
    assert parse_database_url(database_url(target)) == target


def test_a_database_url_keeps_its_tls_options_through_a_round_trip(tmp_path):
    certs = make_certificates(tmp_path)
    target = MySQLTarget(
        "127.0.0.1",
        3307,
        "u",
        "p",
        "campaign",
        ssl_mode="VERIFY_IDENTITY",
        ssl_ca=str(certs.ca),
        ssl_cert=str(certs.client_cert),
        ssl_key=str(certs.client_key),
    )
    assert parse_database_url(database_url(target)) == target


def test_a_tls_redis_server_is_reached_by_a_rediss_url_with_its_ca_and_client_certificate(tmp_path):
    certs = make_certificates(tmp_path / "certs")
    server = RedisServer(tmp_path, tmp_path, certs)
    url = check_redis_url(server.url)
    assert url.startswith(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs=")
    assert "--port 0 --tls-port" in " ".join(server.listening())
