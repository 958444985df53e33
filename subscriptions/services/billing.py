"""Money in: invoices paid (payment.completed), charges of saved methods, and dunning.

- `invoices_paid_by`: the subscriber of payment.completed. Each invoice the payment pays is
  marked paid once (the payment's allocation records the outcome), its subscription activated
  or renewed, and its period's toybox opened (one per invoice, by a unique constraint) for a
  task to fill. Money an invoice cannot take (void, uncollectible, paid already, cancelled
  subscription) is refunded through payments' policy.
- `invoice_charge`: charge an open invoice to the customer's saved method (or, without one,
  open a payment link), one attempt; a failure schedules the next per
  SUBSCRIPTION_DUNNING_DAYS, and after the last the invoice is uncollectible and the
  subscription paused or cancelled (SUBSCRIPTION_DUNNING_FINAL).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import events
from core.errors import ApplicationError
from payments import charges, methods, policy
from payments.errors import PaymentRefused
from payments.policy import Completion
from subscriptions.models import Invoice, Subscription
from subscriptions.purposes import PURPOSE
from subscriptions.services.common import (
    invoice_data,
    invoice_move,
    lock_invoice,
    move,
    period_end,
    subscription_data,
)
from subscriptions.services.lifecycle import renewal_withdrawn, subscription_end, subscription_pause_locked
from subscriptions.services.toyboxes import toybox_open

logger = logging.getLogger("subscriptions.services")
ATTEMPT_LEASE = timedelta(hours=1)  # an attempt that dies is tried again after this
OUTAGE_RETRY = timedelta(minutes=30)  # a gateway out of reach: the same charge again after this
RENEWABLE = (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


# --- payment.completed ----------------------------------------------------------------------
def invoices_paid_by(*, payment_id: str, invoice_numbers: list[str]) -> None:
    for number in invoice_numbers:  # in item order: every subscriber locks in the same order
        invoice_paid(payment_id=payment_id, invoice_number=number)


def _unwanted(invoice: Invoice | None, subscription: Subscription | None, completion: Completion) -> str:
    """Why this invoice cannot take this payment's money ("" if it can)."""
    if invoice is None:
        return "the invoice no longer exists"
    if not completion.succeeded:
        return "the payment is refunded by now"
    if completion.customer_id != invoice.customer_id:
        return "the payment was made by another customer"
    if completion.currency != invoice.currency or completion.amount != invoice.amount:
        return (
            f"the payment brought {completion.amount} {completion.currency}, the invoice is {invoice.amount}"
        )
    if invoice.status != Invoice.Status.OPEN:
        return f"the invoice is {invoice.status}"
    if subscription.status == Subscription.Status.CANCELLED:
        return "the subscription is cancelled"
    return ""


def invoice_paid(*, payment_id: str, invoice_number: str) -> Invoice | None:
    """One invoice paid by one payment, applied once (invoice.paid, subscription.activated or
    .renewed, and the period's toybox opened)."""
    with transaction.atomic():
        subscription, invoice = lock_invoice(number=invoice_number)
        completion = policy.completion_claim(payment_id=payment_id, purpose=PURPOSE, item_id=invoice_number)
        if completion is None:
            return invoice  # a repeated payment.completed, or no such payment for it
        problem = _unwanted(invoice, subscription, completion)
        if problem:
            outcome = policy.completion_refuse(completion, reason=f"invoice {invoice_number}: {problem}")
            logger.warning(
                "payment refused by invoice",
                extra={
                    "invoice": invoice_number,
                    "payment_id": payment_id,
                    "why": problem,
                    "refund": outcome.note,
                },
            )
            return invoice
        now = timezone.now()
        invoice.paid_at, invoice.payment_id, invoice.next_attempt_at = now, payment_id, None
        fields = ["paid_at", "payment_id", "next_attempt_at"]
        if subscription.status == Subscription.Status.PENDING_PAYMENT and invoice.period_start < now:
            # The first period runs from its payment, however long the customer took to pay.
            invoice.period_start = now
            invoice.period_end = period_end(now, subscription.plan.period_months)
            fields += ["period_start", "period_end"]
        invoice_move(invoice, Invoice.Status.PAID, fields=tuple(fields))
        policy.completion_accept(completion, note=f"invoice {invoice_number} paid")
        events.publish("invoice.paid", invoice_data(invoice, payment_id=payment_id))
        _period_paid(subscription, invoice)
        toybox_open(invoice=invoice, subscription=subscription, payment_id=payment_id)
        # Another open payment for the invoice (a link, while the saved card was charged) is closed.
        policy.item_payments_close(purpose=PURPOSE, item_id=invoice_number)
    return invoice


def _period_paid(subscription: Subscription, invoice: Invoice) -> None:
    """The subscription runs for the invoice's period (if it is the latest) and renews at its end."""
    first = subscription.status == Subscription.Status.PENDING_PAYMENT
    if subscription.current_period_end is None or invoice.period_end > subscription.current_period_end:
        subscription.current_period_start = invoice.period_start
        subscription.current_period_end = invoice.period_end
    still_owed = subscription.invoices.filter(status=Invoice.Status.OPEN).exclude(pk=invoice.pk).exists()
    if subscription.status == Subscription.Status.PAUSED:
        subscription.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
        return  # a paused subscription stays paused; resuming renews at the period's end
    subscription.next_renewal_at = None if still_owed else subscription.current_period_end
    target = Subscription.Status.PAST_DUE if still_owed else Subscription.Status.ACTIVE
    move(subscription, target, fields=("current_period_start", "current_period_end", "next_renewal_at"))
    event = "subscription.activated" if first else "subscription.renewed"
    events.publish(event, subscription_data(subscription, invoice_id=invoice.number))


# --- Charging and dunning -------------------------------------------------------------------
def _claim_attempt(
    invoice_id: int, now: datetime, *, force: bool, attempt: int | None, release_hold: bool = False
) -> tuple[Invoice, Subscription] | None:
    """Lock an open invoice of a live subscription that is due (or forced) and lease its
    attempt; None if there is nothing to do.

    `attempt` is the number of failed attempts the caller saw when it decided to charge (the
    renewal's task: 0): a task redelivered after that attempt failed finds the number moved on
    and does not charge again ahead of the dunning schedule, forced or not.
    """
    with transaction.atomic():
        subscription, invoice = lock_invoice(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN or subscription.status not in RENEWABLE:
            return None
        if attempt is not None and invoice.attempts != attempt:
            return None
        if invoice.held_at is not None and not release_hold:
            return None  # held for staff: only their retry (which releases it) charges it
        if not force and (invoice.next_attempt_at is None or invoice.next_attempt_at > now):
            return None
        renewal = (
            subscription.current_period_end is not None
            and invoice.period_start >= subscription.current_period_end
        )
        if renewal and (subscription.cancel_at_period_end or subscription.skip_next):
            # Cancelled or skipped after the renewal opened the invoice: it is not charged.
            renewal_withdrawn(subscription, invoice)
            return None
        invoice.next_attempt_at, invoice.held_at = now + ATTEMPT_LEASE, None
        invoice.save(update_fields=["next_attempt_at", "held_at", "updated_at"])
    return invoice, subscription


def invoice_charge(
    *,
    invoice_id: int,
    now: datetime | None = None,
    force: bool = False,
    attempt: int | None = None,
    release_hold: bool = False,
) -> str:
    """One attempt to collect an open invoice; what happened: "charged", "pending", "failed"
    (declined: dunning goes on, with a payment link), "link" (no saved method: a payment link),
    "held" (the outcome of an earlier charge is unknown: held for staff), or "skipped" (not
    due, held, paid, withdrawn, or not live).

    Raises GatewayUnreachable when the gateway could not be reached: the caller retries, and
    the same payment is charged again with the same idempotency key.
    """
    now = now or timezone.now()
    claimed = _claim_attempt(invoice_id, now, force=force, attempt=attempt, release_hold=release_hold)
    if claimed is None:
        return "skipped"
    invoice, subscription = claimed
    method = methods.method_for_charge(invoice.customer_id)
    if method is None:
        url = _payment_link(invoice)
        invoice_attempt_failed(
            invoice_id=invoice.pk, payment_id="", error="no saved payment method", now=now, payment_url=url
        )
        return "link"
    try:
        payment = policy.payment_open(
            customer_id=invoice.customer_id,
            purpose=PURPOSE,
            item_ids=[invoice.number],
            gateway=method.gateway,
            saved_method_id=method.pk,
        )
    except PaymentRefused as exc:  # paid meanwhile (its completion is on its way), or closed
        logger.info("invoice not charged", extra={"invoice": invoice.number, "why": exc.message})
        return "skipped"
    payment = charges.payment_charge_saved(
        payment_id=payment.pk, description=f"{subscription.plan.name} for {subscription.child.name}"
    )
    if payment.status == payment.Status.FAILED and payment.last_error.startswith(charges.OUTCOME_UNKNOWN):
        invoice_held(invoice_id=invoice.pk, error=payment.last_error)
        return "held"
    if payment.status == payment.Status.FAILED:
        invoice_attempt_failed(
            invoice_id=invoice.pk,
            payment_id=payment.public_id,
            error=payment.last_error,
            now=now,
            payment_url=_payment_link(invoice),  # the customer may pay another way
        )
        return "failed"
    return "charged" if payment.status == payment.Status.SUCCEEDED else "pending"


def _payment_link(invoice: Invoice) -> str:
    """A checkout the customer can pay the invoice with (reused while open); "" if none can be
    opened now (the next attempt tries again)."""
    try:  # the open link payment of the invoice, or a new one (an expired link is not reused)
        payment = policy.payment_open(
            customer_id=invoice.customer_id, purpose=PURPOSE, item_ids=[invoice.number]
        )
    except ApplicationError as exc:
        logger.warning("could not open a payment link", extra={"invoice": invoice.number, "error": str(exc)})
        return ""
    if payment.checkout_url:
        return payment.checkout_url
    return charges.payment_link_open(
        payment_id=payment.pk, description=f"Invoice {invoice.number}", customer_email=invoice.customer.email
    )


def invoice_attempt_failed(
    *, invoice_id: int, payment_id: str, error: str, now: datetime | None = None, payment_url: str = ""
) -> None:
    """Record a failed attempt once per payment (the charge's answer and its payment.failed both
    report it): past_due, the next attempt per SUBSCRIPTION_DUNNING_DAYS counted from the first
    failure, and after the last, uncollectible and paused or cancelled."""
    now = now or timezone.now()
    with transaction.atomic():
        subscription, invoice = lock_invoice(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN or (payment_id and payment_id in invoice.failed_payments):
            return
        if invoice.held_at is not None:
            return  # held for staff: its dunning waits for them
        schedule = settings.SUBSCRIPTION_DUNNING_DAYS
        invoice.attempts += 1
        invoice.first_failed_at = invoice.first_failed_at or now
        invoice.last_error = error[:2000]
        invoice.payment_url = payment_url or invoice.payment_url  # "": none could be opened now
        if payment_id:
            invoice.failed_payments = [*invoice.failed_payments, payment_id]
        final = invoice.attempts > len(schedule)
        invoice.next_attempt_at = (
            None if final else invoice.first_failed_at + timedelta(days=schedule[invoice.attempts - 1])
        )
        fields = (
            "attempts",
            "first_failed_at",
            "last_error",
            "payment_url",
            "failed_payments",
            "next_attempt_at",
        )
        invoice.save(update_fields=[*fields, "updated_at"])
        if subscription.status == Subscription.Status.ACTIVE:
            move(subscription, Subscription.Status.PAST_DUE, note=error)
            events.publish(
                "subscription.past_due", subscription_data(subscription, invoice_id=invoice.number)
            )
        events.publish(
            "invoice.payment_failed",
            invoice_data(invoice, payment_id=payment_id or None, error=error, final=final),
        )
        if not final:
            return
        invoice_move(invoice, Invoice.Status.UNCOLLECTIBLE)
        policy.item_payments_close(purpose=PURPOSE, item_id=invoice.number)
        reason = f"payment failed {invoice.attempts} times"
        if subscription.status == Subscription.Status.PAUSED:
            return
        if settings.SUBSCRIPTION_DUNNING_FINAL == "cancel":
            subscription_end(subscription, reason=reason)
        else:
            subscription_pause_locked(subscription, reason=reason)


def invoice_held(*, invoice_id: int, error: str) -> None:
    """A charge whose outcome is unknown past the time the gateway remembers its key: the
    invoice is not charged again automatically (a new key could charge twice); staff look it
    up at the gateway and then retry the charge (admin) or let it be. Not a failed attempt."""
    with transaction.atomic():
        _, invoice = lock_invoice(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            return
        invoice.next_attempt_at, invoice.held_at, invoice.last_error = None, timezone.now(), error[:2000]
        invoice.save(update_fields=["next_attempt_at", "held_at", "last_error", "updated_at"])
    logger.warning("renewal charge held for staff", extra={"invoice": invoice.number, "error": error})


def invoice_charge_postponed(*, invoice_id: int, error: str, now: datetime | None = None) -> None:
    """The gateway stayed out of reach through the task's retries: the same payment is charged
    again by its key OUTAGE_RETRY later (within the time the gateway remembers the key), and the
    attempt is not counted as a decline."""
    now = now or timezone.now()
    with transaction.atomic():
        _, invoice = lock_invoice(pk=invoice_id)
        if invoice.status != Invoice.Status.OPEN or invoice.held_at is not None:
            return
        invoice.next_attempt_at, invoice.last_error = (
            now + OUTAGE_RETRY,
            f"gateway unavailable: {error}"[:2000],
        )
        invoice.save(update_fields=["next_attempt_at", "last_error", "updated_at"])
