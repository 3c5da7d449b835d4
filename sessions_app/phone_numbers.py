"""Phone numbers are stored in E.164 ("+972501234567") everywhere."""

import functools

import phonenumbers
from django.core.exceptions import ValidationError


@functools.lru_cache(maxsize=4096)  # the same senders write again and again (webhooks)
def to_e164(value: str, *, default_region: str = "IL") -> str:
    """Normalise a number typed by a person or sent by a provider; raise ValidationError."""
    raw = (value or "").strip()
    for prefix in ("whatsapp:", "tel:"):
        raw = raw.removeprefix(prefix)
    if raw.isdigit() and len(raw) > 10 and not raw.startswith("0"):
        raw = f"+{raw}"  # WhatsApp ids: the country code and number, no plus
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        raise ValidationError(f"{value!r} is not a phone number.") from error
    if not phonenumbers.is_possible_number(number):
        raise ValidationError(f"{value!r} is not a possible phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def digits(e164: str) -> str:
    """The form WhatsApp uses in its ids: country code and number, no plus."""
    return e164.lstrip("+")
