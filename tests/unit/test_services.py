"""The shared harness: schema.sql read statement by statement, database URLs."""

from common.settings import MySQLTarget, parse_database_url
from common.store.schema import statements as schema_statements
from common.testing.services import database_url


def test_the_schema_splits_into_its_create_statements_whatever_its_comments_hold(tmp_path):
    statements = schema_statements()
    assert len(statements) == 8 and all(s.lstrip().startswith("CREATE TABLE") for s in statements)
    odd = tmp_path / "schema.sql"
    odd.write_text("-- a comment; with a semicolon;\nCREATE TABLE t (\n  v VARCHAR(5) DEFAULT ';'\n);\n")
    assert schema_statements(odd) == ["CREATE TABLE t (\n  v VARCHAR(5) DEFAULT ';'\n)"]


def test_a_database_url_reads_back_as_the_same_target():
    target = MySQLTarget("127.0.0.1", 3307, "us:er", "p@ss/word", "campaign")
    assert parse_database_url(database_url(target)) == target
