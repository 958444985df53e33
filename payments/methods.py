"""Saved payment methods: kept after a first payment, charged without the customer, deleted
by the customer.

- A purpose that charges again later (subscriptions) says so (`Purpose.saves_methods`); its
  checkouts then ask the gateway to keep the method, and when the payment succeeds the
  gateway's reusable token is kept here (`method_keep`, payment_method.saved). Only the
  token and a label: never card data.
- payments.charges charges one without the customer.
- `method_delete` marks it deleted (payment_method.deleted; never charged again), and
  payments' subscriber of that event asks the gateway to forget it and removes the row: the
  request goes through the outbox, and no task carries the token.
"""

import logging

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core import events
from core.errors import NotFound
from payments.gateways.base import SavedMethod
from payments.models import Payment, SavedPaymentMethod
from payments.purposes import PURPOSES
from payments.registry import gateway_for, gateway_refusal

logger = logging.getLogger(__name__)


def customer_key(customer_id: int) -> str:
    """Our stable id of a customer at a gateway (Tinkoff's CustomerKey, Stripe's metadata)."""
    return f"customer-{customer_id}"


def method_data(method: SavedPaymentMethod) -> dict:
    return {
        "method_id": method.public_id,
        "customer_id": method.customer_id,
        "gateway": method.gateway,
        "label": method.label,
    }


def purpose_saves_methods(purpose: str) -> bool:
    registered = PURPOSES.get(purpose)
    return bool(registered and registered.saves_methods)


def method_keep(*, payment: Payment, saved: SavedMethod) -> SavedPaymentMethod | None:
    """Keep the method a succeeded payment was made with, if its purpose charges again later.

    In the caller's transaction (the payment is locked). The same token kept again is the same
    method (its label refreshed); a new one publishes payment_method.saved.
    """
    if not saved.token or not purpose_saves_methods(payment.purpose):
        return None
    method, created = SavedPaymentMethod.objects.get_or_create(
        customer_id=payment.customer_id,
        gateway=payment.gateway,
        token=saved.token,
        defaults={
            # A gateway whose notice does not name the customer: the key our checkout sent.
            "customer_reference": saved.customer_reference or customer_key(payment.customer_id),
            "label": saved.label[:120],
            "details": saved.raw,
            "first_payment": payment,
        },
    )
    if method.deleted_at is not None:  # deleted, and saved again by a new payment: kept again
        SavedPaymentMethod.objects.filter(pk=method.pk).update(deleted_at=None)
        method.deleted_at, created = None, True
    if created:
        events.publish("payment_method.saved", method_data(method) | {"payment_id": payment.public_id})
    elif saved.label and saved.label != method.label:
        SavedPaymentMethod.objects.filter(pk=method.pk).update(label=saved.label[:120])
    return method


def methods_of(customer_id: int) -> QuerySet[SavedPaymentMethod]:
    """The customer's methods that can be charged (not deleted)."""
    return SavedPaymentMethod.objects.filter(customer_id=customer_id, deleted_at__isnull=True)


def method_for_charge(customer_id: int) -> SavedPaymentMethod | None:
    """The method to charge for a customer now: the one used or saved last, at a gateway that
    takes payments here (not the sandbox in production, only the sandbox with PAYMENT_ENV=mock)."""
    recent = (F("last_used_at").desc(nulls_last=True), "-created_at", "-pk")  # NULLs last everywhere
    for method in methods_of(customer_id).order_by(*recent):
        if not gateway_refusal(method.gateway):
            return method
    return None


def method_delete(*, customer_id: int, method_id: str) -> None:
    """Delete a customer's method: never charged again from now (payment_method.deleted), and
    payments' subscriber of that event asks the gateway to forget it, then removes the row.
    Another customer's method is not found."""
    with transaction.atomic():
        method = methods_of(customer_id).select_for_update().filter(public_id=method_id).first()
        if method is None:
            raise NotFound("No such saved payment method.")
        method.deleted_at = timezone.now()
        method.save(update_fields=["deleted_at"])
        events.publish("payment_method.deleted", method_data(method))


def method_forget(*, method_id: str) -> None:
    """A deleted method: the gateway is asked to forget it (where it has a call for it), then
    the row is removed (its payments keep their history, without it). Raises GatewayError."""
    method = SavedPaymentMethod.objects.filter(public_id=method_id, deleted_at__isnull=False).first()
    if method is None:
        return  # forgotten already
    gateway_for(method.gateway).method_forget(
        SavedMethod(token=method.token, customer_reference=method.customer_reference, raw=method.details)
    )
    method.delete()


def method_forget_refused(*, method_id: str, error: str) -> None:
    """The gateway would not forget it: removed here all the same (it is never charged again)."""
    logger.warning("gateway did not forget a deleted method", extra={"method_id": method_id, "error": error})
    SavedPaymentMethod.objects.filter(public_id=method_id, deleted_at__isnull=False).delete()
