"""Phone numbers: the check before a send, and the masked form for logs.

Numbers are parsed and validated with `phonenumbers` (Google's numbering
plan data) and sent in E.164 digits, without '+', as every supported
gateway takes them. A number in international form ('+', '00', or digits
that start with the country code, as WhatsApp's `to` takes them) needs no
region; a national number ('0812...') is read in `default_region`, and is
invalid without one: the country is never guessed.
"""

import re

import phonenumbers

SEPARATORS = re.compile(r"[\s\-().]")
PLAIN = re.compile(r"\+?\d+")


class InvalidPhone(ValueError):
    """The row's phone cannot be sent to; the row fails without a send."""


def check_region(region: str | None) -> str | None:
    """The region code in upper case, or ValueError when phonenumbers does not know it."""
    if region is None or region == "":
        return None
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a region code such as ID, IN, BR or US")
    return region.upper()


def normalise_phone(raw: str | None, default_region: str | None = None) -> str:
    """E.164 digits without '+'. The reason in InvalidPhone never repeats the number."""
    phone = SEPARATORS.sub("", raw or "")
    if not phone:
        raise InvalidPhone("phone is empty")
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not PLAIN.fullmatch(phone):
        raise InvalidPhone("phone has characters other than digits, spaces, dashes, dots, brackets and a leading +")
    national = not phone.startswith("+") and phone.startswith("0")
    if national and not default_region:
        raise InvalidPhone("phone is a national number and no default region is set (DEFAULT_REGION)")
    readings = ["+" + phone.lstrip("+")]  # international: '+', or digits starting with the country code
    if default_region and not phone.startswith("+"):
        # Digits without '+' are read in the default region first (phonenumbers
        # strips that region's own country code); a national number only so.
        readings = [phone] if national else [phone, readings[0]]
    for text in readings:
        try:
            number = phonenumbers.parse(text, default_region if text == phone else None)
        except phonenumbers.NumberParseException as exc:
            problem = f"phone is not a number: {exc}"
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
        problem = "phone is not a valid number in its country's numbering plan"
    raise InvalidPhone(problem)


def mask_phone(phone: str | None) -> str:
    """Keep the first two and last two digits, enough to tell rows apart in logs."""
    phone = phone or ""
    if len(phone) <= 4:
        return "*" * len(phone)
    return phone[:2] + "*" * (len(phone) - 4) + phone[-2:]
