"""Money: integer minor units everywhere; Decimal only to show an amount to a person."""

from decimal import Decimal

# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3}
_SYMBOLS = {"ILS": "₪", "USD": "$", "EUR": "€", "GBP": "£"}


def minor_exponent(currency: str) -> int:
    return _EXPONENTS.get((currency or "").upper(), 2)


def money_decimal(minor: int, currency: str) -> Decimal:
    """The exact amount as a Decimal: 4250 ILS -> Decimal("42.50")."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise TypeError("Money is an int of minor units.")
    exponent = minor_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def money_format(minor: int, currency: str) -> str:
    """ "42.50 ₪", "12.00 $", "3.500 KWD"."""
    amount = money_decimal(minor, currency)
    currency = (currency or "").upper()
    return f"{amount} {_SYMBOLS.get(currency, currency)}".strip()
