"""Bookings as something payments can take money for: the purpose "booking", items by public id.

A booking asks for its deposit or its total (amount_due, fixed when the slot was held) while
it is held unpaid; its payment expires with the hold.
"""

from collections.abc import Sequence

from django.utils import timezone

from bookings.models import Booking
from payments.purposes import Payability, Payable, Purpose

PURPOSE = "booking"
UNPAID = (Booking.PaymentStatus.UNPAID, Booking.PaymentStatus.FAILED)


class BookingPurpose(Purpose):
    name = PURPOSE

    def payables(self, item_ids: Sequence[str]) -> dict[str, Payable]:
        now = timezone.now()
        bookings = Booking.objects.select_related("resource").filter(public_id__in=item_ids)
        return {booking.public_id: _payable(booking, now) for booking in bookings}


def _payable(booking: Booking, now) -> Payable:
    payability, reason = Payability.PAYABLE, ""
    if booking.payment_status in (Booking.PaymentStatus.PAID, Booking.PaymentStatus.DEPOSIT_PAID):
        payability, reason = Payability.PAID, f"is {booking.payment_status.replace('_', ' ')}"
    elif booking.status != Booking.Status.PENDING_PAYMENT or booking.payment_status not in UNPAID:
        payability, reason = Payability.CLOSED, f"is {booking.status.replace('_', ' ')}"
    elif booking.hold_expires_at is not None and booking.hold_expires_at <= now:
        payability, reason = Payability.CLOSED, "is past its hold"
    local_start = booking.starts_at.astimezone(booking.resource.tz)
    return Payable(
        item_id=booking.public_id,
        customer_id=booking.customer_id,
        amount=booking.amount_due,
        currency=booking.currency,
        payability=payability,
        reason=reason,
        kind=booking.payment_kind,
        description=f"{booking.resource.name}, {local_start:%Y-%m-%d %H:%M}",
        deadline=booking.hold_expires_at,
    )
