"""What payments tell us (subscribers): payment.completed, .failed, .cancelled and .refunded."""

import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, BookingAudit
from bookings.purposes import PURPOSE, UNPAID
from bookings.services.beat import _expire
from bookings.services.common import (
    SlotTaken,
    _audit,
    _flag,
    _lock,
    _money,
    _save_holding,
    booking_event_data,
)
from bookings.services.staff import _close_open_payment
from bookings.transitions import PAYMENT_STATUS
from core import events
from payments import policy
from payments.policy import Completion

logger = logging.getLogger("bookings.services")  # the package's modules all log as bookings.services


def _booking_locked(booking_public_id: str) -> Booking | None:
    booking_id = Booking.objects.filter(public_id=booking_public_id).values_list("pk", flat=True).first()
    if booking_id is None:
        logger.warning("payment event for an unknown booking", extra={"booking_id": booking_public_id})
        return None
    return _lock(booking_id)


def _booking_of_payment(*, booking_public_id: str, payment_public_id: str) -> Booking | None:
    """The locked booking a payment event is about, or None (unknown, or not its current payment:
    an earlier attempt, or one it refused, which changes nothing here)."""
    booking = _booking_locked(booking_public_id)
    if booking is None or booking.payment is None or booking.payment.public_id != payment_public_id:
        return None
    return booking


def booking_apply_payment_completed(
    *, booking_public_id: str, payment_public_id: str, late: bool = False
) -> Booking | None:
    """The payment succeeded: mark it paid (or deposit paid) and confirm the booking.

    A hold that expired meanwhile is confirmed if its slot is still free; a payment made for
    a held booking through the payments API (not its own) pays it, and its own is closed.
    Money the booking does not want (its slot is gone, it was cancelled, it is paid already,
    it no longer exists) is refunded in full through payments' policy and staff are told
    (needs_attention).

    Applied once per payment: the payment's allocation to the booking records the outcome,
    so a second payment.completed for the same payment changes nothing.
    """
    with transaction.atomic():
        booking = _booking_locked(booking_public_id)
        completion = policy.completion_claim(
            payment_id=payment_public_id, purpose=PURPOSE, item_id=booking_public_id
        )
        if completion is None:
            return booking  # repeated, or no payment for this booking
        if booking is None:
            policy.completion_refuse(completion, reason=f"booking {booking_public_id} no longer exists")
            return None
        before, before_payment = booking.status, booking.payment_status
        own = booking.payment_id == completion.payment_pk
        unwanted = _mismatch(booking, completion)  # why the money is not wanted
        if unwanted:
            pass
        elif booking.payment_status in (Booking.PaymentStatus.PAID, Booking.PaymentStatus.DEPOSIT_PAID):
            unwanted.append(
                f"the booking was already {booking.payment_status} "
                + ("at the desk" if own else "by another payment")
            )
        elif booking.payment_status not in UNPAID and own:
            _flag(
                booking,
                f"online payment of {booking.amount_due} {booking.currency} arrived while "
                f"{booking.payment_status}",
            )
        elif booking.payment_status not in UNPAID:
            unwanted.append(f"the booking's payment is {booking.payment_status}")
        elif not own and booking.status != Booking.Status.PENDING_PAYMENT:
            unwanted.append(f"the booking is {booking.status} and this is not its payment")
        note = "payment completed" + (" after its deadline" if late else "")
        confirmed = False
        if unwanted:
            pass
        elif booking.status == Booking.Status.PENDING_PAYMENT:
            booking.status = Booking.Status.CONFIRMED
            confirmed = True
        elif booking.status == Booking.Status.EXPIRED and booking.starts_at <= timezone.now():
            unwanted.append("the hold had expired and its time has begun")
        elif booking.status == Booking.Status.EXPIRED:
            booking.status = Booking.Status.CONFIRMED
            try:
                _save_holding(booking, fields=["status"])
                confirmed = True
                note += "; the hold had expired but the slot was still free: confirmed"
            except SlotTaken:
                booking.status = Booking.Status.EXPIRED
                unwanted.append("the hold had expired and the slot is taken")
        elif booking.status == Booking.Status.CANCELLED:
            unwanted.append("the booking was cancelled")
        if unwanted:
            note += f"; {'; '.join(unwanted)}: " + _refund_unwanted(booking, completion, "; ".join(unwanted))
        else:
            if not own:  # paid through the payments API: that payment pays, its own is closed
                note += f"; paid by {completion.payment_id}, " + (_close_open_payment(booking) or "")
                booking.payment_id = completion.payment_pk
            if booking.payment_status in UNPAID:
                booking.payment_status = (
                    Booking.PaymentStatus.DEPOSIT_PAID
                    if completion.kind == Booking.PaymentKind.DEPOSIT
                    else Booking.PaymentStatus.PAID
                )
                booking.payment_error = ""
            policy.completion_accept(completion)
        booking.hold_expires_at = None if confirmed else booking.hold_expires_at
        booking.save(
            update_fields=[
                "status",
                "payment",
                "payment_status",
                "payment_error",
                "hold_expires_at",
                "needs_attention",
                "attention_note",
                "updated_at",
            ]
        )
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_status=before if booking.status != before else "",
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            note=note.rstrip(", "),
        )
        if confirmed:
            events.publish("booking.confirmed", booking_event_data(booking, by="payment", late=late))
    return booking


def _mismatch(booking: Booking, completion: Completion) -> list[str]:
    """Why this payment cannot pay this booking at all (none: it can)."""
    if not completion.succeeded:
        return ["the payment is refunded by now"]
    if completion.customer_id != booking.customer_id:
        return ["the payment was made by another customer"]
    if completion.currency != booking.currency or completion.amount != _due(booking):
        return [f"the payment is {completion.amount} {completion.currency}, the booking asks {_due(booking)}"]
    return []


def _due(booking: Booking) -> Decimal:
    return _money(booking.amount_due, booking.currency)


def _refund_unwanted(booking: Booking, completion: Completion, reason: str) -> str:
    """Money the booking does not want: refunded in full through payments' policy; a note.

    Money already refunded or on its way (a cancellation's refund, a refund made at the
    payments API) is not asked for again and needs nobody's attention; a new refund, or one
    that cannot be asked for, flags the booking for staff.
    """
    outcome = policy.completion_refuse(completion, reason=f"booking {booking.public_id}: {reason}")
    if outcome.requested or outcome.flagged:
        _flag(booking, f"online payment {completion.payment_id} not wanted ({reason}); {outcome.note}")
    return outcome.note


def booking_apply_payment_failed(
    *, booking_public_id: str, payment_public_id: str, error: str
) -> Booking | None:
    """The payment failed: keep the error on the booking (the hold runs on until its deadline)."""
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        before_payment = booking.payment_status
        booking.payment_error = (error or "payment failed")[:2000]
        if PAYMENT_STATUS.allowed(booking.payment_status, Booking.PaymentStatus.FAILED):
            booking.payment_status = Booking.PaymentStatus.FAILED
        booking.save(update_fields=["payment_status", "payment_error", "updated_at"])
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            note=f"payment failed: {booking.payment_error}",
        )
    return booking


def booking_apply_payment_cancelled(
    *, booking_public_id: str, payment_public_id: str, reason: str
) -> Booking | None:
    """The payment was cancelled or expired unpaid: the hold can no longer be paid, so it ends now."""
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        _expire(booking, reason=f"payment {reason or 'cancelled'}")
    return booking


def booking_apply_payment_refunded(
    *,
    booking_public_id: str,
    payment_public_id: str,
    full: bool,
    amount: str,
    refund_id: str,
    refused: bool = False,
) -> Booking | None:
    """A refund succeeded: a full one marks the booking refunded and cancels it if it held time.

    The refund of money the booking refused (paid twice, paid too late) only goes in its audit.
    """
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        if refused:
            _audit(
                booking,
                source=BookingAudit.Source.PAYMENT,
                note=f"refund {refund_id} of {amount}: money the booking did not take",
            )
            return booking
        if not full:
            _audit(
                booking, source=BookingAudit.Source.PAYMENT, note=f"partial refund {refund_id} of {amount}"
            )
            return booking
        before, before_payment = booking.status, booking.payment_status
        if booking.payment_status == Booking.PaymentStatus.REFUNDED:
            return booking  # repeated
        if PAYMENT_STATUS.allowed(booking.payment_status, Booking.PaymentStatus.REFUNDED):
            booking.payment_status = Booking.PaymentStatus.REFUNDED
        else:  # e.g. refunded while our record still says unpaid: the gateway is right
            booking.payment_status = Booking.PaymentStatus.REFUNDED
            _flag(booking, f"refund {refund_id} arrived while the booking's payment was {before_payment}")
        cancelled = booking.status in (Booking.Status.PENDING_PAYMENT, Booking.Status.CONFIRMED)
        if cancelled:
            booking.status = Booking.Status.CANCELLED
            booking.hold_expires_at = None
        booking.save(
            update_fields=[
                "status",
                "payment_status",
                "hold_expires_at",
                "needs_attention",
                "attention_note",
                "updated_at",
            ]
        )
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_status=before if cancelled else "",
            from_payment_status=before_payment,
            note=f"full refund {refund_id} of {amount}" + ("; booking cancelled" if cancelled else ""),
        )
        if cancelled:
            events.publish(
                "booking.cancelled",
                booking_event_data(booking, reason="refunded in full", refund=True, by="payment"),
            )
    return booking
