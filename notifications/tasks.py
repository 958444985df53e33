"""Celery adapters for notifications, on the `notifications` queue: send one message; sweep."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from notifications import delivery

logger = logging.getLogger(__name__)


@shared_task(
    name="notifications.deliver",
    acks_late=True,
    autoretry_for=(
        OperationalError,
        InterfaceError,
    ),  # the database, not the channel: channels retry in delivery
    max_retries=5,
    retry_backoff=2,
    retry_jitter=True,
    # Below the lease (NOTIFICATIONS_LEASE_SECONDS): a sender is stopped before another may take over.
    soft_time_limit=60,
    time_limit=90,
)
def deliver(notification_id: int) -> str:
    """Reserve, send and record one message (notifications.delivery)."""
    return delivery.deliver(notification_id)


@shared_task(name="notifications.sweep", acks_late=True, acks_on_failure_or_timeout=True, ignore_result=True)
def sweep() -> int:
    """Beat: dispatch again what a lost task or a dead sender left behind, and what quiet hours held."""
    count = delivery.sweep()
    if count:
        logger.info("notifications swept", extra={"dispatched": count})
    return count
