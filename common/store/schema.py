"""schema.sql, read the way scripts/setup reads it: comment lines dropped, a
statement ends at a line ending in ';' (a ';' inside a comment or a value
does not end one). Roles and the web service create the tables that came
after a database was set up from it, with the same statements."""

import re
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[2] / "schema.sql"
CREATED = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


def statements(path: Path = SCHEMA) -> list[str]:
    found, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            found.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    return [statement for statement in found if statement.strip()]


def creating(tables: tuple[str, ...], path: Path = SCHEMA) -> list[str]:
    """The CREATE TABLE IF NOT EXISTS statements of these tables, in schema order."""
    return [s for s in statements(path) if (m := CREATED.search(s)) and m[1] in tables]


def table_names(path: Path = SCHEMA) -> list[str]:
    """Every table schema.sql creates."""
    return [m[1] for s in statements(path) if (m := CREATED.search(s))]
