"""Subscriber patterns follow AMQP topic matching: `*` one word, `#` zero or more."""

import pytest

from core.events.registry import _pattern


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
