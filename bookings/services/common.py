"""Shared helpers of the booking services: the slot_taken error, locks, the audit trail,
booking.* event data, money, and saving a booking that holds time.
"""

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, transaction

from bookings.models import Booking, BookingAudit, Resource
from bookings.selectors import holding_bookings
from core.errors import ApplicationError, InvalidInput, NotFound
from core.money import exponent

OVERLAP_CONSTRAINT = "booking_no_overlap"


class SlotTaken(ApplicationError):
    status_code = 409
    default_code = "slot_taken"
    default_message = "This time is already booked."


def _invalid(field: str, message: str, code: str = "invalid") -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code=code, extra={"fields": {field: [message]}})


def _is_overlap_violation(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == OVERLAP_CONSTRAINT


def _money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP)


def booking_event_data(booking: Booking, **extra: Any) -> dict[str, Any]:
    return {
        "booking_id": booking.public_id,
        "resource_id": booking.resource_id,
        "service_id": booking.service_id,
        "customer_id": booking.customer_id,
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "timezone": booking.resource.timezone,
        "status": booking.status,
        "payment_status": booking.payment_status,
        "payment_id": booking.payment.public_id if booking.payment_id else None,
        "amount_total": _money(booking.amount_total, booking.currency),
        "amount_due": _money(booking.amount_due, booking.currency),
        "currency": booking.currency,
        **extra,
    }


def _audit(
    booking: Booking,
    *,
    source: str,
    from_status: str = "",
    from_payment_status: str = "",
    actor_id: int | None = None,
    note: str = "",
) -> None:
    BookingAudit.objects.create(
        booking=booking,
        from_status=from_status,
        to_status=booking.status if from_status else "",
        from_payment_status=from_payment_status,
        to_payment_status=booking.payment_status if from_payment_status else "",
        source=source,
        actor_id=actor_id,
        note=note,
    )


def _lock(booking_id: int) -> Booking:
    try:
        return (
            Booking.objects.select_for_update(of=("self",))
            .select_related("resource", "payment")
            .get(pk=booking_id)
        )
    except Booking.DoesNotExist:
        raise NotFound("No such booking.") from None


def _lock_resource(resource_id: int) -> None:
    """Serialise the writes that make a booking hold time on one resource.

    The exclusion constraint alone would still refuse every overlap, but concurrent inserts
    that conflict with each other can deadlock while it checks them (PostgreSQL documents
    this for exclusion constraints); queued on the resource's row, each request sees the
    committed winner and gets a clear slot_taken. FOR NO KEY UPDATE: bookings' foreign keys
    to the resource (FOR KEY SHARE) are not blocked by it.
    """
    Resource.objects.select_for_update(no_key=True).filter(pk=resource_id).values_list("pk").first()


def _flag(booking: Booking, note: str) -> None:
    booking.needs_attention = True
    booking.attention_note = "\n".join(filter(None, [booking.attention_note, note]))


def _save_holding(booking: Booking, *, fields: list[str]) -> None:
    """Save a booking that (again) holds its time; the constraint may find the slot taken."""
    _lock_resource(booking.resource_id)
    if booking.status in (Booking.Status.CONFIRMED, Booking.Status.PENDING_PAYMENT):
        others = holding_bookings(
            resource_id=booking.resource_id, start=booking.starts_at, end=booking.ends_at
        ).exclude(pk=booking.pk)
        if others.exists():
            raise SlotTaken("The slot was booked by someone else meanwhile.")
    try:
        with transaction.atomic():
            booking.save(update_fields=[*fields, "updated_at"])
    except IntegrityError as exc:
        if _is_overlap_violation(exc):
            raise SlotTaken("The slot was booked by someone else meanwhile.") from exc
        raise
