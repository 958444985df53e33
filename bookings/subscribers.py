"""What bookings do when payments report: confirm, record a failure, release, cancel on refund.

Each subscriber declares `when={"purpose": "booking"}`: the relay enqueues it only for
payments of bookings. Each subscriber's effect commits with its processed-event row
(core.events), so a redelivered event changes nothing twice.
"""

from bookings import services
from bookings.purposes import PURPOSE
from core import events
from payments.policy import event_allocations, event_refunds

FOR_BOOKINGS = {"purpose": PURPOSE}


def _bookings_paid_by(event: events.Event) -> list[str]:
    return [allocation["purpose_id"] for allocation in event_allocations(event.data, PURPOSE)]


@events.subscriber(
    "payment.completed", queue="bookings", name="bookings.payment_completed", when=FOR_BOOKINGS
)
def booking_on_payment_completed(event: events.Event) -> None:
    for booking_id in _bookings_paid_by(event):
        services.booking_apply_payment_completed(
            booking_public_id=booking_id,
            payment_public_id=event.data["payment_id"],
            late=bool(event.data.get("late")),
        )


@events.subscriber("payment.failed", queue="bookings", name="bookings.payment_failed", when=FOR_BOOKINGS)
def booking_on_payment_failed(event: events.Event) -> None:
    for booking_id in _bookings_paid_by(event):
        services.booking_apply_payment_failed(
            booking_public_id=booking_id,
            payment_public_id=event.data["payment_id"],
            error=event.data.get("error") or "",
        )


@events.subscriber(
    "payment.cancelled", queue="bookings", name="bookings.payment_cancelled", when=FOR_BOOKINGS
)
def booking_on_payment_cancelled(event: events.Event) -> None:
    reason = event.data.get("reason") or "cancelled"
    if reason == "gateway_refused":
        reason = "refused by the gateway"
    for booking_id in _bookings_paid_by(event):
        services.booking_apply_payment_cancelled(
            booking_public_id=booking_id, payment_public_id=event.data["payment_id"], reason=reason
        )


@events.subscriber("payment.refunded", queue="bookings", name="bookings.payment_refunded", when=FOR_BOOKINGS)
def booking_on_payment_refunded(event: events.Event) -> None:
    for refund in event_refunds(event.data, PURPOSE):
        services.booking_apply_payment_refunded(
            booking_public_id=refund.item_id,
            payment_public_id=event.data["payment_id"],
            full=refund.full,
            amount=refund.amount,
            refund_id=event.data.get("refund_id", ""),
            refused=refund.refused,
        )
