"""Phone numbers: the check before a send, and the masked form for logs."""

import re

SEPARATORS = re.compile(r"[\s\-().]")
# E.164 allows at most 15 digits; below 8 no country's subscriber numbers fit.
DIGITS = re.compile(r"\d{8,15}")


class InvalidPhone(ValueError):
    """The row's phone cannot be sent to; the row fails without a send."""


def normalise_phone(raw: str | None) -> str:
    """Digits only, in international form without '+', as WhatsApp wants `to`."""
    phone = SEPARATORS.sub("", raw or "")
    if phone.startswith("+"):
        phone = phone[1:]
    elif phone.startswith("00"):
        phone = phone[2:]
    if not phone:
        raise InvalidPhone("phone is empty")
    if not DIGITS.fullmatch(phone):
        raise InvalidPhone("phone is not 8 to 15 digits")
    return phone


def mask_phone(phone: str | None) -> str:
    """Keep the first two and last two digits, enough to tell rows apart in logs."""
    phone = phone or ""
    if len(phone) <= 4:
        return "*" * len(phone)
    return phone[:2] + "*" * (len(phone) - 4) + phone[-2:]
