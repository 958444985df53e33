"""Celery adapters for payments: fetch by id, call one service. Queue `payments`.

The modules these tasks call send tasks by name (current_app.send_task), so that this module
can import them without a cycle.
"""

import logging
import random

import requests
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.urls import reverse
from django.utils import timezone

from payments import reconciliation, services, webhooks
from payments.gateways.base import GatewayError
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import SandboxCharge, WebhookEvent
from payments.registry import gateway_for

logger = logging.getLogger(__name__)
# A database connection lost mid-task (a PostgreSQL restart, a killed backend) is retried with
# backoff like a gateway's transient error; the next try gets a fresh connection.
DATABASE_ERRORS = (OperationalError, InterfaceError)
GATEWAY_RETRY = {
    "acks_late": True,
    "max_retries": 6,
    "bind": True,
    "autoretry_for": DATABASE_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
}


def _retry_transient(task, exc: GatewayError):
    """Transient gateway errors are retried with exponential backoff and full jitter; others are not."""
    if not exc.transient:
        raise exc
    countdown = random.uniform(1, min(300, 2 ** (task.request.retries + 1)))  # noqa: S311 - jitter
    raise task.retry(exc=exc, countdown=countdown)


@shared_task(name="payments.webhook_process", **GATEWAY_RETRY)
def webhook_process(self, webhook_event_id: int) -> None:
    try:
        webhooks.webhook_verify(webhook_event_id=webhook_event_id)
    except webhooks.WebhookNotConfirmed as exc:
        # Asked again a few times (the row counts them: PAYMENT_WEBHOOK_CONFIRM_ATTEMPTS),
        # whatever retries of transient errors the task has used.
        raise self.retry(exc=exc, countdown=exc.retry_in, max_retries=self.request.retries + 1) from exc
    except GatewayError as exc:
        WebhookEvent.objects.filter(pk=webhook_event_id).update(error=str(exc)[:2000])
        if not exc.transient or self.request.retries >= self.max_retries:
            # Given up: kept with its error for staff; reconciliation re-verifies the payment.
            WebhookEvent.objects.filter(pk=webhook_event_id).update(processed_at=timezone.now())
            return
        _retry_transient(self, exc)


@shared_task(name="payments.payment_verify", **GATEWAY_RETRY)
def payment_verify(self, payment_id: int) -> None:
    try:
        services.payment_verify(payment_id=payment_id)
    except GatewayError as exc:
        services.payment_record_error(payment_id=payment_id, error=str(exc))
        _retry_transient(self, exc)


@shared_task(name="payments.payment_paid_check", **GATEWAY_RETRY)
def payment_paid_check(self, payment_id: int) -> None:
    try:
        reconciliation.payment_paid_check(payment_id=payment_id)
    except GatewayError as exc:
        _retry_transient(self, exc)


@shared_task(
    name="payments.sandbox_webhook_deliver",
    acks_late=True,
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=6,
)
def sandbox_webhook_deliver(reference: str) -> None:
    """Send the sandbox's signed webhook for a charge to this site, as a provider would."""
    gateway = gateway_for("sandbox")
    body = gateway.webhook_body(SandboxCharge.objects.get(reference=reference))
    url = settings.SITE_URL.rstrip("/") + reverse("payments:webhook", args=["sandbox"])
    response = requests.post(
        url,
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, gateway.secret)},
        timeout=(3.05, 10),
    )
    if response.status_code >= 500:
        raise requests.HTTPError(f"webhook endpoint answered {response.status_code}")
    if response.status_code >= 400:
        logger.error(
            "sandbox webhook refused", extra={"reference": reference, "status": response.status_code}
        )


@shared_task(name="payments.refund_execute", **GATEWAY_RETRY)
def refund_execute(self, refund_id: int) -> None:
    try:
        services.refund_execute(refund_id=refund_id)
    except GatewayError as exc:
        _retry_transient(self, exc)


@shared_task(name="payments.reconcile", acks_late=True, acks_on_failure_or_timeout=True)
def reconcile() -> None:
    """Beat: re-verify stale pending payments; send refunds no task picked up; compare paid
    payments with their gateway (a refund made there, outside the system, is flagged)."""
    queued = reconciliation.payments_reverify_stale()
    refunds = reconciliation.refunds_sweep()
    paid = reconciliation.payments_recheck_paid()
    if queued or refunds or paid:
        logger.info(
            "payments reconciled",
            extra={"reverify_queued": queued, "refunds_sent": refunds, "paid_checks_queued": paid},
        )


@shared_task(name="payments.webhooks_sweep", acks_late=True, acks_on_failure_or_timeout=True)
def webhooks_sweep() -> None:
    """Beat, every PAYMENT_WEBHOOK_SWEEP_SECONDS: dispatch stored webhooks no task took (a kick lost
    while the broker was down, say), and those whose task was lost long ago."""
    swept = reconciliation.webhooks_sweep()
    if swept:
        logger.info("webhooks swept", extra={"webhooks_swept": swept})


@shared_task(name="payments.expire_overdue", acks_late=True, acks_on_failure_or_timeout=True)
def expire_overdue() -> None:
    expired = reconciliation.payments_expire_overdue()
    if expired:
        logger.info("payments expired", extra={"expired": expired})


@shared_task(name=webhooks.DISPATCH_TASK, acks_late=True, acks_on_failure_or_timeout=True)
def webhooks_dispatch() -> None:
    """Kicked after webhooks are stored: one processing task per stored, undispatched event."""
    reconciliation.webhooks_dispatch_stored()
