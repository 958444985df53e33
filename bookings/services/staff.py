"""Staff and customer actions: confirm, cancel (and its refund), complete, no-show, resolve."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, BookingAudit
from bookings.purposes import PURPOSE
from bookings.services.common import _audit, _flag, _lock, _save_holding, booking_event_data
from bookings.transitions import BOOKING, PAYMENT_STATUS
from core import events
from core.errors import BusinessRuleViolation
from payments import policy


def booking_confirm(
    *, booking_id: int, actor_id: int | None, paid_in_cash: bool = False, note: str = ""
) -> Booking:
    """Staff confirm a booking (e.g. paid at the desk: `paid_in_cash` marks it paid)."""
    with transaction.atomic():
        booking = _lock(booking_id)
        before, before_payment = booking.status, booking.payment_status
        if BOOKING.is_repeat(booking.status, Booking.Status.CONFIRMED) and not paid_in_cash:
            return booking
        if booking.status != Booking.Status.CONFIRMED:
            BOOKING.check(booking.status, Booking.Status.CONFIRMED)
        if paid_in_cash and booking.payment_status != Booking.PaymentStatus.PAID:
            PAYMENT_STATUS.check(booking.payment_status, Booking.PaymentStatus.PAID)
            booking.payment_status = Booking.PaymentStatus.PAID
        confirming = booking.status != Booking.Status.CONFIRMED
        booking.status = Booking.Status.CONFIRMED
        booking.hold_expires_at = None
        _save_holding(booking, fields=["status", "payment_status", "hold_expires_at"])
        # Paid at the desk: the online payment must not take the money a second time.
        closed = _close_open_payment(booking) if paid_in_cash else ""
        note = note or ("confirmed, paid in cash" if paid_in_cash else "confirmed by staff")
        _audit(
            booking,
            source=BookingAudit.Source.STAFF,
            from_status=before,
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            actor_id=actor_id,
            note="; ".join(filter(None, [note, closed])),
        )
        if confirming:
            events.publish("booking.confirmed", booking_event_data(booking, by="staff"))
    return booking


def _close_open_payment(booking: Booking) -> str:
    """Close the booking's online payment if it can still be paid; a note.

    Called with the booking row locked; payments' policy then locks the payment (booking
    first, payment second, as everywhere). If it succeeded meanwhile it is left alone: its
    payment.completed is on its way and booking_apply_payment_completed refunds it.
    """
    closed = policy.item_payments_close(purpose=PURPOSE, item_id=booking.public_id)
    return f"online payment {', '.join(closed)} closed" if closed else ""


def booking_refund_due(*, booking: Booking, now: datetime | None = None) -> bool:
    """The policy: a full refund when cancelled BOOKING_FREE_CANCEL_HOURS or more before the start."""
    now = now or timezone.now()
    return now <= booking.starts_at - timedelta(hours=settings.BOOKING_FREE_CANCEL_HOURS)


def booking_cancel(
    *,
    booking_id: int,
    actor_id: int | None,
    by_staff: bool = False,
    refund: bool | None = None,
    reason: str = "",
) -> Booking:
    """Cancel a held or confirmed booking and free its slot.

    What was paid online is refunded in full if the policy says so (booking_refund_due);
    staff may decide otherwise with `refund`. The refund goes to the gateway after the
    commit; payment.refunded then marks the booking refunded.
    """
    if refund is not None and not by_staff:
        raise BusinessRuleViolation("Only staff choose whether a cancellation is refunded.", code="forbidden")
    with transaction.atomic():
        booking = _lock(booking_id)
        if BOOKING.is_repeat(booking.status, Booking.Status.CANCELLED):
            return booking
        BOOKING.check(booking.status, Booking.Status.CANCELLED)
        if not by_staff and timezone.now() >= booking.starts_at:
            raise BusinessRuleViolation("The booking has started; ask the staff.", code="already_started")
        due = booking_refund_due(booking=booking)
        refund = due if refund is None else refund
        before = booking.status
        booking.status = Booking.Status.CANCELLED
        booking.hold_expires_at = None
        source = BookingAudit.Source.STAFF if by_staff else BookingAudit.Source.CUSTOMER
        closed = _close_open_payment(booking)  # nobody may pay for a cancelled booking
        requested, note = _refund_after_cancel(booking, actor_id=actor_id) if refund else (False, "no refund")
        booking.save(
            update_fields=["status", "hold_expires_at", "needs_attention", "attention_note", "updated_at"]
        )
        if not refund and booking.payment_status in (
            Booking.PaymentStatus.PAID,
            Booking.PaymentStatus.DEPOSIT_PAID,
        ):
            note = f"no refund ({'staff decision' if due else 'cancelled within the notice period'})"
        _audit(
            booking,
            source=source,
            from_status=before,
            actor_id=actor_id,
            note="; ".join(filter(None, [reason, note, closed])),
        )
        events.publish(
            "booking.cancelled", booking_event_data(booking, reason=reason, refund=requested, by=source)
        )
    return booking


def _refund_after_cancel(booking: Booking, *, actor_id: int | None) -> tuple[bool, str]:
    """Refund all that is left of what the booking's online payment brought; (whether a refund
    is on its way, a note). Payments' policy counts what is already refunded and flags staff
    when the refund cannot be asked for."""
    if booking.payment_id is None:
        outcome = None
    else:
        outcome = policy.allocation_refund(
            payment_id=booking.payment_id,
            purpose=PURPOSE,
            item_id=booking.public_id,
            reason=f"booking {booking.public_id} cancelled",
            cause="cancelled",
            requested_by_id=actor_id,
        )
    if outcome is None or outcome.nothing_paid:
        if booking.payment_status == Booking.PaymentStatus.PAID:
            return False, "refund due, but nothing was paid online: refund at the desk"
        return False, "nothing paid online to refund"
    if outcome.flagged:
        _flag(booking, f"online payment {booking.payment.public_id}: {outcome.note}")
    return outcome.requested, outcome.note


def _finish(*, booking_id: int, target: str, actor_id: int | None, note: str) -> Booking:
    with transaction.atomic():
        booking = _lock(booking_id)
        if BOOKING.is_repeat(booking.status, target):
            return booking
        BOOKING.check(booking.status, target)
        before = booking.status
        booking.status = target
        booking.save(update_fields=["status", "updated_at"])
        _audit(booking, source=BookingAudit.Source.STAFF, from_status=before, actor_id=actor_id, note=note)
    return booking


def booking_complete(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    return _finish(booking_id=booking_id, target=Booking.Status.COMPLETED, actor_id=actor_id, note=note)


def booking_no_show(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    return _finish(booking_id=booking_id, target=Booking.Status.NO_SHOW, actor_id=actor_id, note=note)


def booking_resolve_attention(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    """Staff have dealt with what the booking was flagged for."""
    with transaction.atomic():
        booking = _lock(booking_id)
        if not booking.needs_attention:
            return booking
        booking.needs_attention = False
        booking.save(update_fields=["needs_attention", "updated_at"])
        _audit(
            booking, source=BookingAudit.Source.STAFF, actor_id=actor_id, note=note or "attention resolved"
        )
    return booking
