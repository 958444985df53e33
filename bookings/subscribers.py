"""What bookings do when payments report: confirm, record a failure, release, cancel on refund.

Each subscriber's effect commits with its processed-event row (core.events), so a
redelivered event changes nothing twice. Only events of payments made for a booking count.
"""

from bookings import services
from core import events


def _ours(event: events.Event) -> bool:
    return event.data.get("purpose") == "booking" and bool(event.data.get("purpose_id"))


@events.subscriber("payment.completed", queue="bookings", name="bookings.payment_completed")
def booking_on_payment_completed(event: events.Event) -> None:
    if _ours(event):
        services.booking_apply_payment_completed(
            booking_public_id=event.data["purpose_id"],
            payment_public_id=event.data["payment_id"],
            kind=event.data.get("kind", "full"),
            late=bool(event.data.get("late")),
        )


@events.subscriber("payment.failed", queue="bookings", name="bookings.payment_failed")
def booking_on_payment_failed(event: events.Event) -> None:
    if _ours(event):
        services.booking_apply_payment_failed(
            booking_public_id=event.data["purpose_id"],
            payment_public_id=event.data["payment_id"],
            error=event.data.get("error") or "",
        )


@events.subscriber("payment.cancelled", queue="bookings", name="bookings.payment_cancelled")
def booking_on_payment_cancelled(event: events.Event) -> None:
    if _ours(event):
        services.booking_apply_payment_cancelled(
            booking_public_id=event.data["purpose_id"],
            payment_public_id=event.data["payment_id"],
            reason=event.data.get("reason") or "cancelled",
        )


@events.subscriber("payment.refunded", queue="bookings", name="bookings.payment_refunded")
def booking_on_payment_refunded(event: events.Event) -> None:
    if _ours(event):
        services.booking_apply_payment_refunded(
            booking_public_id=event.data["purpose_id"],
            payment_public_id=event.data["payment_id"],
            full=bool(event.data.get("full")),
            amount=str(event.data.get("amount", "")),
            refund_id=event.data.get("refund_id", ""),
        )
