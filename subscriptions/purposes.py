"""Subscriptions as something payments can take money for: the purpose "subscription", items
by invoice number. A batch may name subscriptions instead: {"subscription_ids": [...]} pays
the open invoice of each."""

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings

from payments.errors import PaymentErrorCode, PaymentRefused
from payments.purposes import Payability, Payable, Purpose, item_refused
from subscriptions.models import Invoice, Subscription

PURPOSE = "subscription"


def collect_until(invoice: Invoice):
    """How long a renewal invoice's payment may stay open: past the last dunning attempt."""
    return invoice.period_start + timedelta(days=max(settings.SUBSCRIPTION_DUNNING_DAYS, default=0) + 1)


class SubscriptionPurpose(Purpose):
    name = PURPOSE
    saves_methods = True  # renewals charge the method the first payment was made with
    batch_field = "subscription_ids"

    def payables(self, item_ids: Sequence[str]) -> dict[str, Payable]:
        invoices = Invoice.objects.filter(number__in=item_ids).select_related(
            "subscription__plan", "subscription__child"
        )
        return {invoice.number: _payable(invoice) for invoice in invoices}

    def items_named(self, values: Sequence[str], customer_id: int) -> list[str]:
        """The open invoice of each subscription (the oldest, if more than one is open)."""
        if len(set(values)) != len(values):
            repeated = next(v for v in values if values.count(v) > 1)
            raise item_refused(PaymentErrorCode.ITEM_REPEATED, PURPOSE, repeated, "is named more than once")
        subscriptions = {
            s.public_id: s
            for s in Subscription.objects.filter(public_id__in=list(values), customer_id=customer_id)
        }
        open_invoices: dict[int, str] = {}
        for subscription_id, number in (
            Invoice.objects.filter(subscription__in=list(subscriptions.values()), status=Invoice.Status.OPEN)
            .order_by("-period_start")
            .values_list("subscription_id", "number")
        ):
            open_invoices[subscription_id] = number  # the oldest is written last
        numbers = []
        for value in values:
            subscription = subscriptions.get(value)
            if subscription is None:
                raise item_refused(PaymentErrorCode.ITEM_NOT_FOUND, PURPOSE, value, "is not one of yours")
            if subscription.pk not in open_invoices:
                raise PaymentRefused(
                    f"subscription {value} has no open invoice to pay.",
                    code=PaymentErrorCode.ITEM_NOT_PAYABLE,
                    extra={"purpose": PURPOSE, "item_id": value},
                )
            numbers.append(open_invoices[subscription.pk])
        return numbers


def _payable(invoice: Invoice) -> Payable:
    subscription = invoice.subscription
    payability, reason = Payability.PAYABLE, ""
    if invoice.status == Invoice.Status.PAID:
        payability, reason = Payability.PAID, "is paid"
    elif invoice.status != Invoice.Status.OPEN:
        payability, reason = Payability.CLOSED, f"is {invoice.status}"
    elif subscription.status == Subscription.Status.CANCELLED:
        payability, reason = Payability.CLOSED, "belongs to a cancelled subscription"
    renewal = subscription.status != Subscription.Status.PENDING_PAYMENT
    return Payable(
        item_id=invoice.number,
        customer_id=invoice.customer_id,
        amount=invoice.amount,
        currency=invoice.currency,
        payability=payability,
        reason=reason,
        description=f"{subscription.plan.name} for {subscription.child.name}, "
        f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}",
        deadline=collect_until(invoice) if renewal else None,
    )
