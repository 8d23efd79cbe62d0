"""Gateway JSON: request bodies out, answers and webhooks in."""

import json

MESSAGE_ID_LENGTH = 128  # longer "ids" are not ids; no receipt could be matched to them
# One encoder for every body: json.dumps with options builds a new one per call.
COMPACT = json.JSONEncoder(separators=(",", ":"))


def dumps(value) -> bytes:
    return COMPACT.encode(value).encode()


def parsed(text: str):
    """The JSON value of a body, or None when it is not JSON (or nested
    deeper than the parser goes)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def message_id(value) -> str | None:
    """A gateway's message id as we keep it: a string (an integer id becomes
    one) of at most MESSAGE_ID_LENGTH characters, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MESSAGE_ID_LENGTH:
        return None
    return value
