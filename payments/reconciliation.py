"""What beat does for payments: re-verify the stale, expire the overdue, sweep the inbox, and
look at paid payments again for a refund made at the gateway, outside the system.

Each pass is bounded (a batch per gateway), idempotent, and safe to run while another pass
or a webhook works on the same payment: every change goes through the services, under the
payment's row lock. Tasks are sent by name (payments.tasks imports this module).
"""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from payments import charges, services
from payments.gateways.base import GatewayError, PaymentState, Status
from payments.models import Payment, PaymentLedgerEntry, Refund, WebhookEvent
from payments.registry import GATEWAY_CLASSES, gateway_for

logger = logging.getLogger(__name__)


def payments_reverify_stale() -> int:
    """Queue a verification of each payment `payments_stale_take` gives (beat's pass)."""
    ids = payments_stale_take()
    for payment_id in ids:
        current_app.send_task("payments.payment_verify", args=[payment_id])
    return len(ids)


def payments_stale_take() -> list[int]:
    """The payments to verify again now: pending longer than PAYMENT_REVERIFY_AFTER_MINUTES.

    At most PAYMENT_REVERIFY_BATCH per gateway per pass: a gateway's API rate limit is
    respected however many payments are waiting. Beat queues a task for each; `manage.py
    payments reconcile` verifies them itself.
    """
    stale_before = timezone.now() - timedelta(minutes=settings.PAYMENT_REVERIFY_AFTER_MINUTES)
    taken = []
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
        taken += ids
    return taken


PAID = (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED)
REFUNDED_THERE = (Status.REFUNDED, Status.PARTIALLY_REFUNDED)


def payments_recheck_paid() -> int:
    """Queue a check of each paid payment `payments_paid_take` gives (beat's pass)."""
    ids = payments_paid_take()
    for payment_id in ids:
        current_app.send_task("payments.payment_paid_check", args=[payment_id])
    return len(ids)


def payments_paid_take() -> list[int]:
    """Paid payments to compare with their gateway again: made within PAYMENT_PAID_RECHECK_DAYS and
    not looked at within PAYMENT_PAID_RECHECK_HOURS, the longest unchecked first, at most
    PAYMENT_REVERIFY_BATCH per gateway per pass (the gateway's rate limit).

    `reverify_queued_at` rotates them, as it rotates pending payments (a payment is one or the
    other, never both).
    """
    now = timezone.now()
    made_after = now - timedelta(days=settings.PAYMENT_PAID_RECHECK_DAYS)
    checked_before = now - timedelta(hours=settings.PAYMENT_PAID_RECHECK_HOURS)
    taken = []
    for gateway in GATEWAY_CLASSES:
        ids = list(
            Payment.objects.filter(gateway=gateway, status__in=PAID, created_at__gte=made_after)
            .filter(Q(reverify_queued_at__isnull=True) | Q(reverify_queued_at__lt=checked_before))
            .exclude(gateway_reference="")
            .order_by(F("reverify_queued_at").asc(nulls_first=True), "created_at")
            .values_list("pk", flat=True)[: settings.PAYMENT_REVERIFY_BATCH]
        )
        Payment.objects.filter(pk__in=ids).update(reverify_queued_at=now)
        taken += ids
    return taken


def _paid_disagreement(payment: Payment, state: PaymentState) -> str:
    """Why the gateway's answer about a payment paid here is not what we recorded ("" if it is).

    A refund of ours still on its way explains a refund the gateway shows; a gateway that shows
    no partial refunds (Paystack) may still say succeeded after one.
    """
    if Refund.objects.filter(payment=payment, status=Refund.Status.PENDING).exists():
        return ""
    agreeing = {
        Payment.Status.SUCCEEDED: {Status.SUCCEEDED},
        Payment.Status.PARTIALLY_REFUNDED: {Status.SUCCEEDED, Status.PARTIALLY_REFUNDED},
    }[payment.status]
    if state.status in agreeing:
        return ""
    here = f"{payment.refunded_amount:f} of {payment.amount:f} {payment.currency} refunded here"
    if state.status in REFUNDED_THERE:
        return (
            f"{payment.gateway} says {state.status} but {here}: refunded at the gateway, outside "
            "this system; record the refund there or ask the gateway"
        )
    return f"{payment.gateway} says {state.status} about a payment paid here ({here}); check at the gateway"


def _flagged_before(payment: Payment, reason: str) -> bool:
    """Whether the payment is flagged for this already, or staff resolved a flag for it (their
    note is in the ledger): a check every few hours must not flag it again for the same answer."""
    if reason in payment.flagged_reason:
        return True
    resolved = payment.ledger.filter(source=PaymentLedgerEntry.Source.STAFF, note__contains=reason)
    return resolved.exists()


def payment_paid_check(*, payment_id: int) -> Payment:
    """Compare a paid payment with its gateway's API and flag it for staff when they disagree.

    A refund made at the gateway (its dashboard, a chargeback) never reaches our refunds, and
    payment_apply_state does not apply refunds: the payment would stay `succeeded` here and
    its item paid. It is flagged (payment.flagged, the *Flagged payments* list) with what the
    gateway said, kept in the ledger; nothing is refunded or changed on a guess. An agreeing
    answer writes nothing. Raises GatewayError for the caller to retry.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in PAID or not payment.gateway_reference:
        return payment
    state = gateway_for(payment.gateway).verify(payment.gateway_reference)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status not in PAID:
            return payment  # refunded meanwhile, by us
        reason = _paid_disagreement(payment, state)
        if reason and not _flagged_before(payment, reason):
            services.payment_apply_state(
                payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.VERIFY
            )
            services.payment_flag(payment, reason)
    return payment


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
            if charges.charge_may_have_been_sent(payment):
                # Expiring it would let a new payment charge again under a new key.
                charges.payment_charge_unknown(payment=payment)
                continue
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


# Accepted webhooks still to be processed: proven ones, and unsigned ones awaiting confirmation.
_ACCEPTED = Q(signature_valid=True) | Q(proof=WebhookEvent.Proof.UNCONFIRMED)


def _dispatch(queryset, limit: int) -> int:
    """Claim rows (skipping those another pass holds) and give each a processing task.

    The claim (dispatched_at) commits only for rows whose task the broker confirmed: the rows
    stay locked while their tasks are sent, and a send that fails claims only those sent
    before it. A pass that dies midway (its process killed, its database connection cut, the
    broker gone) therefore claims nothing it did not send, and the next sweep takes the rest at
    once; its worst case is a row sent twice, which webhook_verify makes harmless.
    """
    with transaction.atomic():
        ids = list(
            queryset.order_by("received_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        sent = 0
        try:
            for event_id in ids:
                current_app.send_task("payments.webhook_process", args=[event_id])
                sent += 1
        except Exception:
            logger.warning("could not dispatch webhooks; the next sweep will", exc_info=True)
        WebhookEvent.objects.filter(pk__in=ids[:sent]).update(dispatched_at=timezone.now())
    return sent


def webhooks_dispatch_stored(*, limit: int = 1000) -> int:
    """Give each stored, not yet dispatched webhook its task (kicked on receipt)."""
    pending = WebhookEvent.objects.filter(_ACCEPTED, dispatched_at__isnull=True, processed_at__isnull=True)
    return _dispatch(pending, limit)


def webhooks_sweep(*, older_than_seconds: float | None = None, limit: int = 500) -> int:
    """Dispatch webhooks that are still unprocessed and were never dispatched (their kick was lost:
    the broker was down, say) or were dispatched longer ago than `older_than_seconds`
    (PAYMENT_WEBHOOK_REDISPATCH_SECONDS: their task was lost).

    That age is longer than a task's whole retry schedule, so that a webhook whose task is still
    retrying is not given a second chain of retries.
    """
    if older_than_seconds is None:
        older_than_seconds = settings.PAYMENT_WEBHOOK_REDISPATCH_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stranded = WebhookEvent.objects.filter(_ACCEPTED, processed_at__isnull=True).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=cutoff)
    )
    return _dispatch(stranded, limit)


def refunds_sweep(*, older_than_seconds: int = 120, limit: int = 200) -> int:
    """Send refunds reserved but never sent to the gateway (their task was lost after commit)."""
    ids = refunds_unsent(older_than_seconds=older_than_seconds, limit=limit)
    for refund_id in ids:
        current_app.send_task("payments.refund_execute", args=[refund_id])
    return len(ids)


def refunds_unsent(*, older_than_seconds: int = 120, limit: int = 200) -> list[int]:
    """Refunds reserved more than `older_than_seconds` ago and never sent to the gateway."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Refund.objects.filter(status=Refund.Status.PENDING, sent_at__isnull=True, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
