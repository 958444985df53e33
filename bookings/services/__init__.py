"""Writes on bookings. Each owns its transaction, locks the booking row, follows
bookings.transitions, appends to the audit trail and publishes booking.* events.

No two bookings that hold time (pending_payment, confirmed) of one resource overlap: on
PostgreSQL the exclusion constraint `booking_no_overlap` guarantees it, however many
requests race; the overlap check done here first only gives the common case a clear answer
early (and is the guarantee on SQLite, whose transactions here take the write lock at BEGIN).

The modules, each importing only those below it: common (shared helpers), beat (expiry and
reminders), holds (holding a slot), staff (staff and customer actions), payment_handlers
(what payments tell us). Callers import from this package.
"""

from bookings.services.beat import booking_expire, booking_expire_holds, booking_send_reminders
from bookings.services.common import OVERLAP_CONSTRAINT, SlotTaken
from bookings.services.holds import (
    booking_check_time,
    booking_deposit,
    booking_hold,
    booking_price,
)
from bookings.services.payment_handlers import (
    booking_apply_payment_cancelled,
    booking_apply_payment_completed,
    booking_apply_payment_failed,
    booking_apply_payment_refunded,
)
from bookings.services.staff import (
    booking_cancel,
    booking_complete,
    booking_confirm,
    booking_no_show,
    booking_refund_due,
    booking_resolve_attention,
)

__all__ = [
    "OVERLAP_CONSTRAINT",
    "SlotTaken",
    "booking_apply_payment_cancelled",
    "booking_apply_payment_completed",
    "booking_apply_payment_failed",
    "booking_apply_payment_refunded",
    "booking_cancel",
    "booking_check_time",
    "booking_complete",
    "booking_confirm",
    "booking_deposit",
    "booking_expire",
    "booking_expire_holds",
    "booking_hold",
    "booking_no_show",
    "booking_price",
    "booking_refund_due",
    "booking_resolve_attention",
    "booking_send_reminders",
]
