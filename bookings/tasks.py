"""Celery adapters for bookings: beat's passes, each calling one service. Queue `bookings`."""

import logging

from celery import shared_task

from bookings import services

logger = logging.getLogger(__name__)


@shared_task(name="bookings.expire_holds", acks_late=True, acks_on_failure_or_timeout=True)
def expire_holds() -> int:
    """Beat: holds past their deadline expire (booking.expired) and free their slots."""
    expired = services.booking_expire_holds()
    if expired:
        logger.info("booking holds expired", extra={"expired": expired})
    return expired


@shared_task(name="bookings.send_reminders", acks_late=True, acks_on_failure_or_timeout=True)
def send_reminders() -> int:
    """Beat: booking.reminder once per confirmed booking about to start."""
    sent = services.booking_send_reminders()
    if sent:
        logger.info("booking reminders published", extra={"reminders": sent})
    return sent
