import pytest

from common.phones import InvalidPhone, check_region, mask_phone, normalise_phone


@pytest.mark.parametrize(
    "raw,region,phone",
    [
        ("628123456789", None, "628123456789"),  # digits with the country code, as WhatsApp takes them
        ("+62 812-3456-789", None, "628123456789"),
        ("0062 (812) 3456789", None, "628123456789"),
        ("08123456789", "ID", "628123456789"),  # national, read in the default region
        ("628123456789", "ID", "628123456789"),
        ("(415) 555-2671", "US", "14155552671"),
        ("14155552671", "ID", "14155552671"),  # not an Indonesian number: read as international
    ],
)
def test_phones_are_normalised_to_e164_digits(raw, region, phone):
    assert normalise_phone(raw, region) == phone


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("", "empty"),
        (None, "empty"),
        ("   ", "empty"),
        ("abc", "characters"),
        ("x628123456789", "characters"),
        ("62812345678x", "characters"),
        ("628123", "not a valid number"),
        ("1234567890123456", "not a valid number"),
        ("08123456789", "no default region"),  # national without a region: never guessed
    ],
)
def test_bad_phones_are_refused_with_a_reason_that_hides_the_number(raw, reason):
    with pytest.raises(InvalidPhone, match=reason) as refused:
        normalise_phone(raw)
    assert not raw or raw.strip() == "" or raw not in str(refused.value)


def test_region_codes_are_checked():
    assert check_region("id") == "ID" and check_region(None) is None
    with pytest.raises(ValueError, match="region code"):
        check_region("Indonesia")


def test_masking_keeps_only_the_ends():
    assert mask_phone("628123456789") == "62********89"
    assert mask_phone("123") == "***"
    assert mask_phone(None) == ""
