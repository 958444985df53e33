"""Subscriber patterns follow AMQP topic matching (`*` one word, `#` zero or more); `when` checks data."""

import uuid
from decimal import Decimal

import pytest

from core.events.registry import Subscriber, _condition, _pattern, subscriber


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("payment.completed", "payment.completed", True),
        ("payment.completed", "payment.completedx", False),
        ("booking.*", "booking.confirmed", True),
        ("booking.*", "booking", False),
        ("booking.*", "booking.a.b", False),
        ("*.paid", "order.paid", True),
        ("payment.#", "payment", True),
        ("payment.#", "payment.refund.partial", True),
        ("payment.#", "paymentx.completed", False),
        ("#.paid", "paid", True),
        ("#.paid", "a.b.paid", True),
        ("#.paid", "a.b.paidx", False),
        ("order.#.x", "order.x", True),
        ("order.#.x", "order.a.b.x", True),
        ("#", "anything.at.all", True),
        ("#.#", "a", True),
    ],
)
def test_topic_pattern(pattern, event_type, matches):
    assert bool(_pattern(pattern).fullmatch(event_type)) is matches


def _subscriber(when) -> Subscriber:
    return Subscriber(
        name="tests.when",
        patterns=("#",),
        func=lambda event: None,
        queue="default",
        max_retries=0,
        retry_for=(),
        retry_backoff=1,
        retry_jitter=False,
        when=_condition(when),
    )


@pytest.mark.parametrize(
    ("when", "data", "accepts"),
    [
        (None, {"purpose": "order"}, True),
        ({}, {}, True),
        ({"purpose": "booking"}, {"purpose": "booking", "purpose_id": "7"}, True),
        ({"purpose": "booking"}, {"purpose": "order"}, False),
        ({"purpose": "booking"}, {}, False),  # a missing key never matches
        ({"purpose": None}, {}, False),  # ...not even None
        ({"purpose": None}, {"purpose": None}, True),
        ({"purpose": ("order", "booking")}, {"purpose": "booking"}, True),
        ({"purpose": ("order", "booking")}, {"purpose": "toybox"}, False),
        ({"purpose": frozenset({"order", "booking"})}, {"purpose": "order"}, True),
        ({"purpose": "order", "currency": "USD"}, {"purpose": "order", "currency": "USD"}, True),
        ({"purpose": "order", "currency": "USD"}, {"purpose": "order", "currency": "EUR"}, False),
        ({"available": 0}, {"available": 0}, True),
        ({"available": 0}, {"available": "0"}, False),  # compared as the JSON data carry them
        ({"purpose": "order"}, {"purpose": ["order"]}, False),
        ({"paid": True}, {"paid": False}, False),
    ],
)
def test_when_condition(when, data, accepts):
    assert _subscriber(when).accepts(data) is accepts


@pytest.mark.parametrize(
    ("when", "error"),
    [
        ({"amount": Decimal("75.00")}, r"only str, int, float, bool or None"),
        ({"purpose": ("order", uuid.UUID(int=1))}, r"only str, int, float, bool or None"),
        ({"purpose": ()}, r"lists no value"),
        ({1: "order"}, r"is not a string"),
    ],
)
def test_a_when_that_could_never_match_is_refused_at_registration(when, error):
    with pytest.raises(ValueError, match=error):
        subscriber("payment.completed", when=when)
