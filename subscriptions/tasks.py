"""Celery adapters for subscriptions: fetch by id, call one service. Queue `subscriptions`."""

import logging
import random

from celery import shared_task
from django.db import InterfaceError, OperationalError

from payments.errors import GatewayUnreachable
from subscriptions import services

logger = logging.getLogger(__name__)


@shared_task(name="subscriptions.renew_due", acks_late=True, acks_on_failure_or_timeout=True)
def renew_due() -> None:
    """Beat: send the renewal of every due subscription and every invoice's next attempt, and
    cancel subscriptions never paid within SUBSCRIPTION_UNPAID_DAYS."""
    subscriptions, invoices = services.renewals_dispatch()
    unpaid = services.subscriptions_expire_unpaid()
    if subscriptions or invoices or unpaid:
        logger.info(
            "renewals dispatched",
            extra={"subscriptions": subscriptions, "invoices": invoices, "unpaid_cancelled": unpaid},
        )


@shared_task(name="subscriptions.renew_batch", acks_late=True)
def renew_batch(subscription_ids: list[int]) -> int:
    return services.subscriptions_renew(subscription_ids=subscription_ids)


@shared_task(name="subscriptions.invoice_charge", acks_late=True, bind=True, max_retries=4)
def invoice_charge(
    self, invoice_id: int, force: bool = False, attempt: int | None = None, release_hold: bool = False
) -> str:
    """One attempt at an invoice (`attempt`: the failed attempts it was sent after, so that a
    redelivered task does not charge again ahead of dunning). A gateway that cannot be reached
    is asked again with the same idempotency key (never a second charge); when it stays out of
    reach, the same charge is sent again half an hour later, not counted as a decline."""
    try:
        return services.invoice_charge(
            invoice_id=invoice_id,
            force=force or self.request.retries > 0,
            attempt=attempt,
            release_hold=release_hold,
        )
    except GatewayUnreachable as exc:
        if self.request.retries >= self.max_retries:
            services.invoice_charge_postponed(invoice_id=invoice_id, error=str(exc))
            return "postponed"
        countdown = random.uniform(5, min(600, 10 * 2 ** (self.request.retries + 1)))  # noqa: S311 - jitter
        kwargs = {"invoice_id": invoice_id, "force": True, "attempt": attempt, "release_hold": release_hold}
        raise self.retry(exc=exc, countdown=countdown, kwargs=kwargs) from exc


@shared_task(
    name="subscriptions.toybox_build",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),  # a lost database connection: try again
    retry_backoff=True,
    retry_jitter=True,
    max_retries=6,
)
def toybox_build(toybox_id: int) -> str:
    """Fill a paid period's box; a worker killed mid-build rolls back and the box is built on redelivery."""
    return services.toybox_build(toybox_id=toybox_id).status


@shared_task(name="subscriptions.toyboxes_sweep", acks_late=True, acks_on_failure_or_timeout=True)
def toyboxes_sweep() -> None:
    swept = services.toyboxes_sweep()
    if swept:
        logger.info("toybox builds sent again", extra={"toyboxes": swept})
