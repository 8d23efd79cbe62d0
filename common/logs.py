"""Log lines: readable text by default, or one JSON object per line for log
shippers (`--log-format json`). Either way a line says which role and
partition wrote it; a line about one row carries its id."""

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str, partition: str):
        super().__init__()
        self.role = role
        self.partition = partition

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "role": self.role,
            "partition": self.partition,
            "logger": record.name,
            "event": record.getMessage(),
        }
        if getattr(record, "row_id", None) is not None:
            line["row_id"] = record.row_id  # type: ignore[attr-defined]
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str, role: str, partition) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(role, str(partition)))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {role}[{partition}] %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # urllib3 logs every request at DEBUG, with its URL; one line per send is too many.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
