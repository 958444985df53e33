"""Shared helpers of the subscription services: locks, event data, periods, moves."""

from datetime import datetime
from typing import Any

from dateutil.relativedelta import relativedelta

from core.errors import InvalidInput
from core.money import quantize
from subscriptions.models import Invoice, Subscription, Toybox
from subscriptions.transitions import INVOICE, SUBSCRIPTION


def invalid(field: str, message: str, code: str = "invalid") -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code=code, extra={"fields": {field: [message]}})


def period_end(start: datetime, months: int) -> datetime:
    return start + relativedelta(months=months)


def lock_subscription(subscription_id: int) -> Subscription:
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "child")
        .get(pk=subscription_id)
    )


def lock_invoice(**invoice: object) -> tuple[Subscription | None, Invoice | None]:
    """The invoice (by pk or number) and its subscription, both locked: the subscription first,
    as everywhere; (None, None) when there is no such invoice."""
    subscription = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "child")
        .filter(**{f"invoices__{field}": value for field, value in invoice.items()})
        .first()
    )
    if subscription is None:
        return None, None
    found = Invoice.objects.select_for_update().get(**invoice)
    found.subscription = subscription
    return subscription, found


def subscription_data(subscription: Subscription, **extra: Any) -> dict[str, Any]:
    return {
        "subscription_id": subscription.public_id,
        "user_id": subscription.customer_id,
        "customer_id": subscription.customer_id,
        "child_id": subscription.child_id,
        "plan_id": subscription.plan_id,
        "status": subscription.status,
        "current_period_start": subscription.current_period_start,
        "current_period_end": subscription.current_period_end,
        "next_renewal_at": subscription.next_renewal_at,
        "cancel_at_period_end": subscription.cancel_at_period_end,
        **extra,
    }


def invoice_data(invoice: Invoice, **extra: Any) -> dict[str, Any]:
    return {
        "invoice_id": invoice.number,
        "subscription_id": invoice.subscription.public_id,
        "user_id": invoice.customer_id,
        "customer_id": invoice.customer_id,
        "amount": quantize(invoice.amount, invoice.currency),
        "currency": invoice.currency,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "status": invoice.status,
        "attempts": invoice.attempts,
        "next_attempt_at": invoice.next_attempt_at,
        "payment_url": invoice.payment_url,
        **extra,
    }


def toybox_data(toybox: Toybox, **extra: Any) -> dict[str, Any]:
    return {
        "toybox_id": toybox.public_id,
        "user_id": toybox.customer_id,
        "customer_id": toybox.customer_id,
        "child_id": toybox.child_id,
        "subscription_id": toybox.subscription.public_id,
        "payment_id": toybox.payment_id,
        "invoice_id": toybox.invoice.number,
        "period_start": toybox.period_start,
        "status": toybox.status,
        "toys": [{"sku": item.sku, "name": item.name} for item in toybox.items.all()],
        **extra,
    }


def move(subscription: Subscription, target: str, *, fields: tuple[str, ...] = (), note: str = "") -> None:
    SUBSCRIPTION.check(subscription.status, target)
    subscription.status = target
    subscription.status_note = note[:255]
    subscription.save(update_fields=["status", "status_note", "updated_at", *fields])


def invoice_move(invoice: Invoice, target: str, *, fields: tuple[str, ...] = ()) -> None:
    INVOICE.check(invoice.status, target)
    invoice.status = target
    invoice.save(update_fields=["status", "updated_at", *fields])
