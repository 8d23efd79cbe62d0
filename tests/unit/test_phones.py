import pytest

from common.phones import InvalidPhone, mask_phone, normalise_phone


@pytest.mark.parametrize("raw,phone", [
    ("628123456789", "628123456789"),
    ("+62 812-3456-789", "628123456789"),
    ("0062 (812) 3456789", "628123456789"),
])
def test_phones_are_normalised_to_digits(raw, phone):
    assert normalise_phone(raw) == phone


@pytest.mark.parametrize("raw,reason", [
    ("", "empty"), (None, "empty"), ("   ", "empty"), ("abc", "digits"), ("12345", "digits"),
    ("1234567890123456", "digits"), ("62812345678x", "digits"),
])
def test_bad_phones_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidPhone, match=reason):
        normalise_phone(raw)


def test_masking_keeps_only_the_ends():
    assert mask_phone("628123456789") == "62********89"
    assert mask_phone("123") == "***"
    assert mask_phone(None) == ""
