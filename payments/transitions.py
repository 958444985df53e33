"""Which payment status may follow which (the issue's table)."""

from core.transitions import Transitions

PAYMENT = Transitions(
    {
        "created": {"pending", "failed", "cancelled", "expired"},
        "pending": {"succeeded", "failed", "cancelled", "expired"},
        "succeeded": {"partially_refunded", "refunded"},
        "partially_refunded": {"partially_refunded", "refunded"},
        "failed": set(),
        "cancelled": set(),
        "expired": set(),
        "refunded": set(),
    },
    name="payment",
    repeatable={"partially_refunded"},
)

REFUND = Transitions(
    {"pending": {"succeeded", "failed"}, "succeeded": set(), "failed": set()},
    name="refund",
)
