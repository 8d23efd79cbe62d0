"""What tests, the benchmark and the chaos run share to stand up services:
free ports, the schema loaded statement by statement, URLs for a database."""

import socket
from pathlib import Path
from urllib.parse import quote

SCHEMA = Path(__file__).resolve().parents[2] / "schema.sql"


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def schema_statements(path: Path = SCHEMA) -> list[str]:
    """schema.sql's statements, as scripts/setup reads them: comment lines
    dropped, a statement ends at a line ending in ';' (a ';' inside a
    comment or a value does not end one)."""
    statements, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    return [statement for statement in statements if statement.strip()]


def load_schema(cursor) -> None:
    """Create the project's tables with a pymysql cursor on the target database."""
    for statement in schema_statements():
        cursor.execute(statement)


def database_url(target) -> str:
    """mysql://... for a MySQLTarget, as DATABASE_URL takes it (user and password quoted)."""
    password = f":{quote(target.password, safe='')}" if target.password else ""
    where = f"{target.host}:{target.port}"
    socket_part = f"?unix_socket={quote(target.unix_socket)}" if target.unix_socket else ""
    return f"mysql://{quote(target.user, safe='')}{password}@{where}/{target.database}{socket_part}"
