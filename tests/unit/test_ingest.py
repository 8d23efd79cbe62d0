"""What the ingest takes as a request body, before any message is read."""

import pytest

from common.store.ingest import BadMessage, IngestRules, parse_body, parse_messages

RULES = IngestRules({"column2"}, "hello_world", None)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"to": "+6281234567890", "params": {"column2": "\\ud800"}}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"to": "+6281234567890", "params": {"column2": NaN}}', "NaN is not a JSON value"),
        (b"\xff{}", "must be JSON"),
        (b"", "must be JSON"),
    ],
)
def test_a_body_that_is_not_plain_json_text_is_refused_with_the_reason(raw, reason):
    with pytest.raises(BadMessage, match=reason):
        parse_body(raw)


def test_a_surrogate_pair_is_one_character_and_taken():
    assert parse_body(b'{"column2": "\\ud83d\\ude00"}') == {"column2": "\U0001f600"}


@pytest.mark.parametrize("value", [1e999, -1e999, True, None, [1], "x" * 1001])
def test_a_param_that_is_not_a_finite_number_or_a_short_text_is_refused(value):
    with pytest.raises(BadMessage, match="params.column2 must be a text or a finite number"):
        parse_messages({"to": "+6281234567890", "params": {"column2": value}}, RULES)
