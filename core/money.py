"""Money: Decimal amounts with an ISO 4217 currency, quantized to the currency's minor unit.

Floats never touch money. Minor units (kobo, cents, kopecks) exist only at a gateway's edge:
`to_minor` on the way out, `from_minor` on the way in.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# Minor-unit exponents (ISO 4217) of the currencies the gateways here take; others are refused.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "RUB": 2, "NGN": 2, "GHS": 2, "ZAR": 2, "KES": 2,
    "UAH": 2, "KZT": 2, "BYN": 2, "CAD": 2, "AUD": 2, "CHF": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "INR": 2, "CNY": 2, "BRL": 2, "MXN": 2, "XOF": 0,
    "JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3,
}  # fmt: skip


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


def quantize(amount: Decimal | str | int, currency: str) -> Decimal:
    """`amount` as a Decimal with exactly the currency's minor digits; refuses floats and extra digits."""
    if isinstance(amount, float):
        raise MoneyError("money must not be a float")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise MoneyError(f"not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not an amount: {amount!r}")
    step = Decimal(1).scaleb(-exponent(currency))
    quantized = value.quantize(step, rounding=ROUND_HALF_UP)
    if quantized != value:
        raise MoneyError(f"{amount} has more decimals than {currency} allows")
    return quantized


def to_minor(amount: Decimal, currency: str) -> int:
    """75.00 USD -> 7500 (cents)."""
    return int(quantize(amount, currency).scaleb(exponent(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    """7500, USD -> Decimal('75.00')."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise MoneyError(f"minor units must be an integer, not {units!r}")
    return quantize(Decimal(units).scaleb(-exponent(currency)), currency)
