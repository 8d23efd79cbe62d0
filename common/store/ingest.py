"""The ingest API's input: messages to add to the campaign table as pending
rows. Everything is checked before anything is written, so a bad message in
a batch adds none of them."""

import hashlib
import json
import math
import re
from dataclasses import dataclass

from common.phones import InvalidPhone, normalise_phone
from common.settings import IDENTIFIER

MAX_BATCH = 10_000
MAX_VALUE_LENGTH = 1000
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # a UUID, or any visible ASCII the client likes


class BadMessage(ValueError):
    """The request cannot be taken as it is; the text says why (a 400)."""


@dataclass(frozen=True)
class NewRow:
    phone: str  # E.164 digits
    params: dict  # column -> text, for the campaign's message variables


@dataclass(frozen=True)
class IngestRules:
    """What the ingest checks against: the table's columns and what the campaign sends."""

    columns: set[str]
    template: str
    text: str | None
    template_column: str | None = None
    text_column: str | None = None
    default_region: str | None = None


def parse_body(raw: bytes):
    """The request body as JSON, or BadMessage. Stricter than Flask's
    get_json, which lets the RecursionError of JSON nested thousands deep
    through (a 500) and takes NaN and Infinity; and no text may hold a lone
    surrogate ("\\ud800"): it is not Unicode, and MySQL cannot store it."""
    try:
        body = json.loads(raw, parse_constant=not_json)
        json.dumps(body, ensure_ascii=False).encode()  # fails on a lone surrogate anywhere, keys included
    except RecursionError:
        raise BadMessage("the body is JSON nested too deeply") from None
    except UnicodeEncodeError:
        raise BadMessage(
            "the body has a lone surrogate (\\ud800 to \\udfff without its pair), which is not text"
        ) from None
    except ValueError as exc:  # UnicodeDecodeError too: JSON is UTF-8
        raise BadMessage(f"the body must be JSON: {exc}") from None
    return body


def not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def request_key(key: str | None, body) -> tuple[str, str] | None:
    """(Idempotency-Key, digest of the body) for a request that has a key: the
    digest tells a retry from a different request that reuses the key."""
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadMessage("Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID will do)")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return key, hashlib.sha256(canonical.encode()).hexdigest()


def parse_messages(body, rules: IngestRules) -> list[NewRow]:
    """One message or a list of them → rows, or BadMessage naming the first problem."""
    messages = body if isinstance(body, list) else [body]
    if not messages:
        raise BadMessage("no messages: send an object or a non-empty list of objects")
    if len(messages) > MAX_BATCH:
        raise BadMessage(f"at most {MAX_BATCH:,} messages per request, got {len(messages):,}")
    return [parse_one(m, n, rules) for n, m in enumerate(messages)]


def parse_one(message, n: int, rules: IngestRules) -> NewRow:
    where = f"message {n}"
    if not isinstance(message, dict):
        raise BadMessage(f'{where}: must be an object with "to"')
    unknown = sorted(set(message) - {"to", "template", "text", "params"})
    if unknown:
        raise BadMessage(f"{where}: unknown fields {', '.join(unknown)}")
    if not isinstance(message.get("to"), str):
        raise BadMessage(f'{where}: "to" must be a phone number as a string')
    try:
        phone = normalise_phone(message["to"], rules.default_region)
    except InvalidPhone as exc:
        raise BadMessage(f"{where}: {exc}") from None
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise BadMessage(f'{where}: "params" must be an object of column: value')
    params = {**params, **own_content(message, where, rules)}
    for column, value in params.items():
        if not IDENTIFIER.fullmatch(column) or column not in rules.columns:
            raise BadMessage(f"{where}: params names {column!r}, which is not a column of the campaign table")
        if not is_param_value(value):
            raise BadMessage(
                f"{where}: params.{column} must be a text or a finite number of at most {MAX_VALUE_LENGTH} characters"
            )
    return NewRow(phone, {column: str(value) for column, value in params.items()})


def is_param_value(value) -> bool:
    """A text or number the table can take as text (1e999 reads as infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(str(value)) <= MAX_VALUE_LENGTH


def own_content(message: dict, where: str, rules: IngestRules) -> dict:
    """A message's own template or text goes into TEMPLATE_COLUMN / TEXT_COLUMN;
    without that column, a message may only name what the campaign sends."""
    own = {}
    for field, column, default, variable in (
        ("template", rules.template_column, rules.template, "TEMPLATE"),
        ("text", rules.text_column, rules.text, "TEXT"),
    ):
        if field not in message:
            continue
        value = message[field]
        if not isinstance(value, str) or not value.strip():
            raise BadMessage(f'{where}: "{field}" must be a non-empty text')
        if column:
            own[column] = value
        elif value != default:
            raise BadMessage(
                f"{where}: this campaign sends one {field} (WHATSAPP_{variable}); set "
                f"{variable}_COLUMN to a column of the table to give each message its own"
            )
    return own
