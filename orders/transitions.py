"""Which order status may follow which.

`expired -> paid` and `cancelled -> paid` exist only for staff accepting a payment that came
in late (orders.services.order_accept_late_payment); no event takes that path by itself.
"""

from core.transitions import Transitions

ORDER = Transitions(
    {
        "pending_payment": {"paid", "cancelled", "expired"},
        "paid": {"fulfilled", "refunded"},
        "fulfilled": {"refunded"},
        "cancelled": {"paid"},
        "expired": {"paid"},
        "refunded": set(),
    },
    name="order",
)
