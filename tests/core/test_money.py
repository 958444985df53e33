from decimal import Decimal

import pytest

from core.money import MoneyError, from_minor, quantize, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("75.00", "USD", 7500),
        ("0.01", "NGN", 1),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        ("10", "RUB", 1000),
    ],
)
def test_minor_units_round_trip(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor
    assert from_minor(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(0.1, "USD"), ("1.005", "USD"), ("1.5", "JPY"), ("NaN", "USD"), ("abc", "USD"), ("1", "XYZ")],
)
def test_what_is_not_money_is_refused(amount, currency):
    with pytest.raises(MoneyError):
        quantize(amount, currency)


def test_minor_units_must_be_integers():
    with pytest.raises(MoneyError):
        from_minor(75.0, "USD")
