"""Which booking status, and which payment status of a booking, may follow which."""

from core.transitions import Transitions

BOOKING = Transitions(
    {
        "pending_payment": {"confirmed", "expired", "cancelled"},
        "confirmed": {"completed", "no_show", "cancelled"},
        # A payment that completes after the hold expired confirms it if the slot is still free.
        "expired": {"confirmed"},
        "completed": set(),
        "no_show": set(),
        "cancelled": set(),
    },
    name="booking",
)

PAYMENT_STATUS = Transitions(
    {
        "unpaid": {"deposit_paid", "paid", "failed"},
        # The customer may pay after a failed attempt (the gateway reports the success late).
        "failed": {"deposit_paid", "paid"},
        # The balance of a deposit is paid at the venue (staff confirm it).
        "deposit_paid": {"paid", "refunded"},
        "paid": {"refunded"},
        "refunded": set(),
    },
    name="booking payment",
)
