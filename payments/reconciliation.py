"""What beat does for payments: re-verify the stale, expire the overdue, sweep the inbox.

Each pass is bounded (a batch per gateway), idempotent, and safe to run while another pass
or a webhook works on the same payment: every change goes through the services, under the
payment's row lock.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from payments import services
from payments.gateways.base import GatewayError
from payments.models import Payment, WebhookEvent
from payments.registry import GATEWAY_CLASSES

logger = logging.getLogger(__name__)


def payments_reverify_stale() -> int:
    """Queue a verification of payments pending longer than PAYMENT_REVERIFY_AFTER_MINUTES.

    At most PAYMENT_REVERIFY_BATCH per gateway per pass: a gateway's API rate limit is
    respected however many payments are waiting.
    """
    from payments.tasks import payment_verify

    stale_before = timezone.now() - timedelta(minutes=settings.PAYMENT_REVERIFY_AFTER_MINUTES)
    queued = 0
    for gateway in GATEWAY_CLASSES:
        ids = list(
            Payment.objects.filter(
                gateway=gateway, status=Payment.Status.PENDING, updated_at__lt=stale_before
            )
            .exclude(gateway_reference="")
            .order_by(F("reverify_queued_at").asc(nulls_first=True), "updated_at")
            .values_list("pk", flat=True)[: settings.PAYMENT_REVERIFY_BATCH]
        )
        # Rotate: a payment still pending after its check goes to the back of the line.
        Payment.objects.filter(pk__in=ids).update(reverify_queued_at=timezone.now())
        for payment_id in ids:
            payment_verify.delay(payment_id)
            queued += 1
    return queued


def payments_expire_overdue(*, limit: int = 200) -> int:
    """Expire payments past their deadline, after one last look at the gateway.

    A payment the gateway says is paid completes instead; one whose gateway cannot be
    reached now is left for the next pass rather than expired on a guess.
    """
    expired = 0
    overdue = Payment.objects.filter(
        status__in=[Payment.Status.CREATED, Payment.Status.PENDING], deadline__lt=timezone.now()
    ).order_by("deadline")[:limit]
    for payment in overdue:
        try:
            if payment.gateway_reference:
                try:
                    payment = services.payment_verify(payment_id=payment.pk)
                except GatewayError as exc:
                    services.payment_record_error(payment_id=payment.pk, error=str(exc))
                    if exc.transient:
                        continue
            if services.payment_expire(payment_id=payment.pk).status == Payment.Status.EXPIRED:
                expired += 1
        except Exception:  # one bad payment must not stop the pass for the others
            logger.exception("could not expire payment", extra={"payment_id": payment.pk})
    return expired


def _dispatch(queryset, limit: int) -> int:
    """Claim rows (skipping those another pass holds) and give each a processing task."""
    from payments.tasks import webhook_process

    with transaction.atomic():
        ids = list(
            queryset.order_by("received_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        WebhookEvent.objects.filter(pk__in=ids).update(dispatched_at=timezone.now())
        for event_id in ids:
            webhook_process.delay_on_commit(event_id)
    return len(ids)


def webhooks_dispatch_stored(*, limit: int = 1000) -> int:
    """Give each stored, not yet dispatched webhook its task (kicked on receipt)."""
    pending = WebhookEvent.objects.filter(
        signature_valid=True, dispatched_at__isnull=True, processed_at__isnull=True
    )
    return _dispatch(pending, limit)


def webhooks_sweep(*, older_than_seconds: int = 600, limit: int = 500) -> int:
    """Dispatch again webhooks still unprocessed long after their last dispatch (a lost kick or task).

    Older than a task's whole retry schedule, so that a webhook whose task is still retrying
    is not given a second chain of retries.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stranded = WebhookEvent.objects.filter(signature_valid=True, processed_at__isnull=True).filter(
        Q(dispatched_at__lt=cutoff) | Q(dispatched_at__isnull=True, received_at__lt=cutoff)
    )
    return _dispatch(stranded, limit)


def refunds_sweep(*, older_than_seconds: int = 120, limit: int = 200) -> int:
    """Send refunds reserved but never sent to the gateway (their task was lost after commit)."""
    from payments.models import Refund
    from payments.tasks import refund_execute

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Refund.objects.filter(status=Refund.Status.PENDING, sent_at__isnull=True, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for refund_id in ids:
        refund_execute.delay(refund_id)
    return len(ids)
