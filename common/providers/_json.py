"""Reading gateway answers that may or may not be JSON."""

import json


def parsed(text: str):
    """The JSON value of a body, or None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
