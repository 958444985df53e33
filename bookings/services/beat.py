"""Expiry and reminders (beat)."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, BookingAudit
from bookings.purposes import PURPOSE
from bookings.services.common import _audit, _event_data, _lock
from bookings.transitions import BOOKING
from core import events
from payments import policy

logger = logging.getLogger("bookings.services")  # the package's modules all log as bookings.services


def _expire(booking: Booking, *, reason: str) -> bool:
    """Expire a locked pending hold; not one whose payment already succeeded (its event is coming)."""
    if booking.status != Booking.Status.PENDING_PAYMENT:
        return False
    if policy.item_payment_received(purpose=PURPOSE, item_id=booking.public_id):
        return False
    BOOKING.check(booking.status, Booking.Status.EXPIRED)
    booking.status = Booking.Status.EXPIRED
    booking.save(update_fields=["status", "updated_at"])
    _audit(
        booking, source=BookingAudit.Source.SYSTEM, from_status=Booking.Status.PENDING_PAYMENT, note=reason
    )
    events.publish("booking.expired", _event_data(booking, reason=reason))
    return True


def booking_expire(*, booking_id: int, reason: str = "hold expired") -> Booking:
    with transaction.atomic():
        booking = _lock(booking_id)
        _expire(booking, reason=reason)
    return booking


def booking_expire_holds(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire holds past their deadline (booking.expired), freeing their slots. Idempotent."""
    now = now or timezone.now()
    due = (
        Booking.objects.filter(status=Booking.Status.PENDING_PAYMENT, hold_expires_at__lt=now)
        .order_by("hold_expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for booking_id in list(due):
        try:
            with transaction.atomic():
                expired += _expire(_lock(booking_id), reason="hold expired")
        except Exception:  # one bad booking must not stop the pass for the others
            logger.exception("could not expire booking hold", extra={"booking_id": booking_id})
    return expired


def booking_send_reminders(*, now: datetime | None = None, limit: int = 500) -> int:
    """Publish booking.reminder once per confirmed booking starting within BOOKING_REMINDER_HOURS.

    reminder_sent_at is set in the transaction that publishes, under the row lock (SKIP
    LOCKED: a concurrent pass takes other rows), so a booking is reminded exactly once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Booking.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("resource", "payment")
            .filter(
                status=Booking.Status.CONFIRMED,
                reminder_sent_at__isnull=True,
                starts_at__gt=now,
                starts_at__lte=now + timedelta(hours=settings.BOOKING_REMINDER_HOURS),
            )
            .order_by("starts_at")[:limit]
        )
        for booking in due:
            booking.reminder_sent_at = now
            booking.save(update_fields=["reminder_sent_at", "updated_at"])
            events.publish(
                "booking.reminder", _event_data(booking, hours_before=settings.BOOKING_REMINDER_HOURS)
            )
    return len(due)
