"""A subscription's life as the customer or staff change it: create, cancel, pause, resume, skip."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation, NotFound
from payments import policy
from subscriptions.models import Child, Invoice, Plan, Subscription
from subscriptions.purposes import PURPOSE
from subscriptions.services.common import (
    invoice_data,
    invoice_move,
    lock_subscription,
    move,
    period_end,
    subscription_data,
)

LIVE = (Subscription.Status.PENDING_PAYMENT, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)
ONE_LIVE = "subscription_one_live_per_child_plan"


def invoice_open(
    subscription: Subscription, *, period_start: datetime, next_attempt_at: datetime | None = None
) -> Invoice:
    """The subscription's invoice for the period starting then (invoice.created), made once.

    The caller holds the subscription's lock, so no other invoice for it is being made.
    """
    invoice = Invoice.objects.filter(subscription=subscription, period_start=period_start).first()
    if invoice is None:
        invoice = Invoice.objects.create(
            subscription=subscription,
            period_start=period_start,
            customer_id=subscription.customer_id,
            period_end=period_end(period_start, subscription.plan.period_months),
            amount=subscription.plan.price,
            currency=subscription.plan.currency,
            next_attempt_at=next_attempt_at,
        )
        events.publish("invoice.created", invoice_data(invoice))
    return invoice


def subscription_create(
    *, customer_id: int, child_id: int, plan_id: int, now: datetime | None = None
) -> Subscription:
    """Subscribe one of the customer's children to an active plan that suits the child's age.

    Pending payment, with the first period's invoice open (subscription.created,
    invoice.created): paying it (POST /api/payments/batch) activates the subscription.
    """
    now = now or timezone.now()
    child = Child.objects.filter(pk=child_id, customer_id=customer_id).first()
    if child is None:
        raise NotFound("No such child of yours.", extra={"fields": {"child": ["not one of yours"]}})
    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is None:
        raise NotFound("No such plan.", extra={"fields": {"plan": ["no such plan"]}})
    if not plan.is_active:
        raise BusinessRuleViolation(
            f"The plan {plan.name} is no longer offered.",
            code="plan_inactive",
            extra={"fields": {"plan": ["inactive"]}},
        )
    age = child.age_months(timezone.localdate(now))
    if age < plan.age_min_months or age > plan.age_max_months:
        code = "child_too_young" if age < plan.age_min_months else "child_too_old"
        raise BusinessRuleViolation(
            f"{child.name} is {age} months old; {plan.name} is for {plan.age_min_months} to "
            f"{plan.age_max_months} months.",
            code=code,
            extra={"age_months": age, "fields": {"child": [code.replace("_", " ")]}},
        )
    already = BusinessRuleViolation(
        f"{child.name} already has a subscription to {plan.name}.",
        code="already_subscribed",
        extra={"fields": {"plan": ["already subscribed"]}},
    )
    if (
        Subscription.objects.filter(child=child, plan=plan)
        .exclude(status=Subscription.Status.CANCELLED)
        .exists()
    ):
        raise already
    try:
        with transaction.atomic():
            subscription = Subscription.objects.create(customer_id=customer_id, child=child, plan=plan)
            events.publish("subscription.created", subscription_data(subscription))
            invoice_open(subscription, period_start=now)
    except IntegrityError as exc:  # a concurrent twin: the constraint settles the race
        # PostgreSQL's message names the constraint, SQLite's its columns.
        if ONE_LIVE not in str(exc) and "subscriptions_subscription.child_id" not in str(exc):
            raise
        raise already from exc
    return subscription


def _void_open_invoices(subscription: Subscription) -> list[str]:
    """Void what is still owed, and close the payments that could still pay it."""
    voided = []
    for invoice in subscription.invoices.select_for_update().filter(status=Invoice.Status.OPEN):
        invoice.next_attempt_at = None
        invoice_move(invoice, Invoice.Status.VOID, fields=("next_attempt_at",))
        policy.item_payments_close(purpose=PURPOSE, item_id=invoice.number)
        voided.append(invoice.number)
    return voided


def subscription_cancel(
    *, subscription_id: int, at_period_end: bool = True, reason: str = ""
) -> Subscription:
    """Cancel now (open invoices void), or at the end of the paid period (the default for a paid
    subscription; one never paid is cancelled now). The paid period's box is still sent."""
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status == Subscription.Status.CANCELLED:
            return subscription
        never_paid = subscription.status == Subscription.Status.PENDING_PAYMENT
        period_over = _renewal_owed(subscription) is not None  # renewed, its invoice not paid yet
        if (
            at_period_end
            and not never_paid
            and not period_over
            and subscription.status == Subscription.Status.ACTIVE
        ):
            if not subscription.cancel_at_period_end:
                subscription.cancel_at_period_end = True
                subscription.save(update_fields=["cancel_at_period_end", "updated_at"])
                events.publish(
                    "subscription.cancelled",
                    subscription_data(subscription, at_period_end=True, reason=reason),
                )
            return subscription
        subscription_end(subscription, reason=reason or "cancelled")
    return subscription


def subscription_end(subscription: Subscription, *, reason: str) -> None:
    """Cancel a locked subscription now."""
    voided = _void_open_invoices(subscription)
    subscription.cancelled_at = timezone.now()
    subscription.next_renewal_at = None
    move(subscription, Subscription.Status.CANCELLED, fields=("cancelled_at", "next_renewal_at"), note=reason)
    events.publish(
        "subscription.cancelled",
        subscription_data(subscription, at_period_end=False, reason=reason, voided_invoices=voided),
    )


def subscription_pause(*, subscription_id: int, reason: str = "paused by the customer") -> Subscription:
    """Stop renewing (no charge, no box) until resumed; the paid period runs to its end."""
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status == Subscription.Status.PAUSED:
            return subscription
        if subscription.status not in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE):
            raise BusinessRuleViolation(
                f"A {subscription.status.replace('_', ' ')} subscription cannot be paused.",
                code="not_pausable",
            )
        subscription_pause_locked(subscription, reason=reason)
    return subscription


def subscription_pause_locked(subscription: Subscription, *, reason: str) -> None:
    subscription.invoices.filter(status=Invoice.Status.OPEN).update(next_attempt_at=None)  # no attempts
    subscription.paused_at = timezone.now()
    move(subscription, Subscription.Status.PAUSED, fields=("paused_at",), note=reason)
    events.publish("subscription.paused", subscription_data(subscription, reason=reason))


def subscription_resume(*, subscription_id: int, now: datetime | None = None) -> Subscription:
    """Renew again: at the paid period's end, or now if it has ended (a new period starts now).

    An invoice still open for a period that has not ended is charged again now (past_due);
    one for a period already over is void: the customer is not charged for time paused.
    """
    now = now or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status != Subscription.Status.PAUSED:
            raise BusinessRuleViolation(
                f"Only a paused subscription can be resumed; this one is {subscription.status}.",
                code="not_paused",
            )
        for invoice in subscription.invoices.select_for_update().filter(
            status=Invoice.Status.OPEN, period_end__lte=now
        ):
            invoice_move(invoice, Invoice.Status.VOID)
            policy.item_payments_close(purpose=PURPOSE, item_id=invoice.number)
        owed = subscription.invoices.filter(status=Invoice.Status.OPEN)
        owed.filter(held_at__isnull=True).update(next_attempt_at=now, updated_at=now)  # held: staff's
        end = subscription.current_period_end
        subscription.next_renewal_at = None if owed.exists() else max(end, now) if end else now
        subscription.paused_at = None
        target = Subscription.Status.PAST_DUE if owed.exists() else Subscription.Status.ACTIVE
        move(subscription, target, fields=("paused_at", "next_renewal_at"))
        events.publish("subscription.resumed", subscription_data(subscription))
    return subscription


def subscription_skip(*, subscription_id: int) -> Subscription:
    """The next period is not charged and has no box; the one after renews as usual."""
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status != Subscription.Status.ACTIVE or subscription.cancel_at_period_end:
            raise BusinessRuleViolation(
                "Only an active subscription that is not ending can skip its next box.", code="not_skippable"
            )
        if not subscription.skip_next:
            subscription.skip_next = True
            subscription.save(update_fields=["skip_next", "updated_at"])
        owed = _renewal_owed(subscription)
        if owed is not None:  # renewed already, not paid yet: that period is the one skipped
            renewal_withdrawn(subscription, owed)
    return subscription


def _renewal_owed(subscription: Subscription) -> Invoice | None:
    """The open invoice of a period after the paid one (renewed, not paid yet), locked."""
    if subscription.current_period_end is None:
        return None
    return (
        subscription.invoices.select_for_update()
        .filter(status=Invoice.Status.OPEN, period_start__gte=subscription.current_period_end)
        .order_by("period_start")
        .first()
    )


def renewal_withdrawn(subscription: Subscription, invoice: Invoice) -> None:
    """A locked subscription cancelled at its period's end, or skipping its next box, after the
    renewal opened the next period's invoice: that invoice is void (its open payments closed;
    one that succeeds anyway is refunded) and the subscription ends, or moves on a period."""
    invoice.next_attempt_at = None
    invoice_move(invoice, Invoice.Status.VOID, fields=("next_attempt_at",))
    policy.item_payments_close(purpose=PURPOSE, item_id=invoice.number)
    if subscription.cancel_at_period_end:
        subscription_end(subscription, reason="cancelled at the end of the period")
        return
    subscription.current_period_start, subscription.current_period_end = (
        invoice.period_start,
        invoice.period_end,
    )
    subscription.next_renewal_at, subscription.skip_next = invoice.period_end, False
    target = Subscription.Status.ACTIVE
    move(
        subscription,
        target,
        fields=("current_period_start", "current_period_end", "next_renewal_at", "skip_next"),
    )
    events.publish("subscription.renewed", subscription_data(subscription, skipped=True))


def subscriptions_expire_unpaid(*, now: datetime | None = None, limit: int = 500) -> int:
    """Cancel subscriptions whose first invoice was not paid within SUBSCRIPTION_UNPAID_DAYS
    (subscription.cancelled, reason "unpaid"; the invoice void, its payments closed); a
    payment already succeeded for it is left to arrive (it activates the subscription)."""
    before = (now or timezone.now()) - timedelta(days=settings.SUBSCRIPTION_UNPAID_DAYS)
    ids = list(
        Subscription.objects.filter(status=Subscription.Status.PENDING_PAYMENT, created_at__lt=before)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    cancelled = 0
    for subscription_id in ids:
        with transaction.atomic():
            subscription = lock_subscription(subscription_id)
            if subscription.status != Subscription.Status.PENDING_PAYMENT:
                continue
            numbers = subscription.invoices.filter(status=Invoice.Status.OPEN).values_list(
                "number", flat=True
            )
            if any(policy.item_payment_received(purpose=PURPOSE, item_id=n) for n in numbers):
                continue
            subscription_end(subscription, reason="unpaid")
            cancelled += 1
    return cancelled
