"""Expiry and reminders (beat)."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bookings.models import Booking, BookingAudit
from bookings.purposes import PURPOSE
from bookings.services.common import _audit, _lock, booking_event_data
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
    events.publish("booking.expired", booking_event_data(booking, reason=reason))
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
    """Publish booking.reminder once per confirmed booking and window of BOOKING_REMINDER_HOURS.

    A booking starting within H hours (and not within the next smaller window) that has had
    no reminder for a window of H hours or less gets one with hours_before=H; a booking made
    two hours before its start gets only the two-hour one. reminder_hours is set in the
    transaction that publishes, under the row lock (SKIP LOCKED: a concurrent pass takes
    other rows), so each window is reminded exactly once.
    """
    now = now or timezone.now()
    windows = sorted(settings.BOOKING_REMINDER_HOURS)
    sent = 0
    with transaction.atomic():
        for index, hours in enumerate(windows):
            smaller = windows[index - 1] if index else 0
            due = list(
                Booking.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("resource", "payment")
                .filter(
                    Q(reminder_hours__isnull=True) | Q(reminder_hours__gt=hours),
                    status=Booking.Status.CONFIRMED,
                    starts_at__gt=now + timedelta(hours=smaller),
                    starts_at__lte=now + timedelta(hours=hours),
                )
                .order_by("starts_at")[: limit - sent]
            )
            for booking in due:
                booking.reminder_sent_at, booking.reminder_hours = now, hours
                booking.save(update_fields=["reminder_sent_at", "reminder_hours", "updated_at"])
                events.publish("booking.reminder", booking_event_data(booking, hours_before=hours))
            sent += len(due)
            if sent >= limit:
                break
    return sent
