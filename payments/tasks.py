"""Celery adapters for payments: fetch by id, call one service. Queue `payments`."""

import logging
import random

import requests
from celery import shared_task
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from payments import services
from payments.gateways.base import GatewayError
from payments.models import WebhookEvent

logger = logging.getLogger(__name__)
GATEWAY_RETRY = {"acks_late": True, "max_retries": 6, "bind": True}


def _retry_transient(task, exc: GatewayError):
    """Transient gateway errors are retried with exponential backoff and full jitter; others are not."""
    if not exc.transient:
        raise exc
    countdown = random.uniform(1, min(300, 2 ** (task.request.retries + 1)))  # noqa: S311 - jitter
    raise task.retry(exc=exc, countdown=countdown)


@shared_task(name="payments.webhook_process", **GATEWAY_RETRY)
def webhook_process(self, webhook_event_id: int) -> None:
    try:
        services.webhook_verify(webhook_event_id=webhook_event_id)
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
    from payments.gateways.sandbox import SIGNATURE_HEADER, sign
    from payments.models import SandboxCharge
    from payments.registry import gateway_for

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
    """Beat: re-verify stale pending payments; dispatch webhooks and refunds no task picked up."""
    from payments import reconciliation

    queued = reconciliation.payments_reverify_stale()
    swept = reconciliation.webhooks_sweep()
    refunds = reconciliation.refunds_sweep()
    if queued or swept or refunds:
        logger.info(
            "payments reconciled",
            extra={"reverify_queued": queued, "webhooks_swept": swept, "refunds_sent": refunds},
        )


@shared_task(name="payments.expire_overdue", acks_late=True, acks_on_failure_or_timeout=True)
def expire_overdue() -> None:
    from payments import reconciliation

    expired = reconciliation.payments_expire_overdue()
    if expired:
        logger.info("payments expired", extra={"expired": expired})


@shared_task(name="payments.webhooks_dispatch", acks_late=True, acks_on_failure_or_timeout=True)
def webhooks_dispatch() -> None:
    """Kicked after webhooks are stored: one processing task per stored, undispatched event."""
    from payments import reconciliation

    reconciliation.webhooks_dispatch_stored()
