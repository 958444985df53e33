"""Charging a saved method without the customer (renewals).

`payment_charge_saved` charges a method for a payment opened by payments.policy, outside any
transaction. The gateway is sent one idempotency key per payment, so a charge retried after
a timeout charges once; a payment stays open until the gateway's answer is applied, and the
next attempt reuses it (policy.payment_open reuses an open payment for the same items), so
an answer that was lost is asked for again rather than charged twice.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.money import quantize
from payments import services
from payments.errors import GatewayUnreachable
from payments.gateways.base import GatewayError, PaymentState, SavedChargeRequest, SavedMethod, Status
from payments.models import Payment, PaymentLedgerEntry, SavedPaymentMethod
from payments.registry import gateway_for

logger = logging.getLogger(__name__)
# Gateways remember an idempotency key for 24 hours (Stripe, YooKassa): a charge is sent again
# with its key only within this, after which a lost answer is for staff to look up.
KEY_REMEMBERED = timedelta(hours=20)
# How a payment failed for that reason begins its last_error (the caller holds the item for staff).
OUTCOME_UNKNOWN = "the charge's outcome is unknown"


def payment_charge_saved(*, payment_id: int, description: str = "") -> Payment:
    """Charge an open payment (payments.policy.payment_open with a saved_method_id) to its saved
    method, and apply the gateway's answer.

    Outside any transaction (a network call). The idempotency key is the payment's: the same
    payment charged again (a retried task, the next attempt) is the same charge at the gateway.
    Returns the payment: succeeded, failed (payment.failed, the decline in last_error), or
    pending when the gateway decides later (its webhook or reconciliation completes it).
    Raises GatewayUnreachable when the gateway could not be reached: the payment stays open,
    to be charged again with its key. A payment past `created` is not charged
    again: its state is asked for instead. One whose method was deleted meanwhile fails.
    """
    payment = Payment.objects.select_related("saved_method", "customer").get(pk=payment_id)
    if payment.status == Payment.Status.PENDING and payment.gateway_reference:
        try:  # charged already, its outcome not known yet: ask, never charge again
            return services.payment_verify(payment_id=payment.pk)
        except GatewayError as exc:
            if exc.transient:
                raise GatewayUnreachable(str(exc)) from exc
            services.payment_record_error(payment_id=payment.pk, error=str(exc))
            return payment  # pending: its webhook or reconciliation settles it
    if payment.status != Payment.Status.CREATED:
        return payment
    method = payment.saved_method
    if method is None or method.deleted_at is not None:
        return _failed(payment, "the saved payment method was deleted")
    if payment.last_error and timezone.now() - payment.created_at > KEY_REMEMBERED:
        # Sent before, its answer lost, and the gateway may have forgotten the key by now:
        # sending it again could charge twice.
        return payment_charge_unknown(payment=payment)
    request = SavedChargeRequest(
        payment_id=payment.public_id,
        amount=quantize(payment.amount, payment.currency),
        currency=payment.currency,
        description=description or f"Payment {payment.public_id}",
        customer_email=payment.customer.email,
        method=SavedMethod(
            token=method.token, customer_reference=method.customer_reference, raw=method.details
        ),
        idempotency_key=f"{payment.public_id}:charge",
        metadata={"payment_id": payment.public_id},
    )
    try:
        state = gateway_for(payment.gateway).charge_saved(request)
    except GatewayError as exc:
        services.payment_record_error(payment_id=payment.pk, error=str(exc))
        if exc.transient:
            raise GatewayUnreachable(str(exc)) from exc
        logger.warning(
            "saved method refused", extra={"payment_id": payment.public_id, "method_id": method.public_id}
        )
        # The gateway refused the request itself (an invalid or revoked token): the attempt
        # failed, as a decline does.
        return _failed(payment, str(exc))
    SavedPaymentMethod.objects.filter(pk=method.pk).update(last_used_at=timezone.now())
    return services.payment_apply_state(
        payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.CHARGE, reference=state.reference
    )


def charge_may_have_been_sent(payment: Payment) -> bool:
    """A charge payment sent to its gateway whose answer never came (no reference, an error)."""
    return bool(
        payment.saved_method_id
        and payment.status == Payment.Status.CREATED
        and payment.last_error
        and not payment.gateway_reference
    )


def payment_charge_unknown(*, payment: Payment) -> Payment:
    """Give up on a charge whose outcome is unknown: failed with OUTCOME_UNKNOWN (what it was
    for is held for staff, never charged again under a new key) and flagged for staff to look
    it up at the gateway (by our payment id in its metadata)."""
    services.payment_flag(payment, f"charge outcome unknown since {payment.created_at:%Y-%m-%d %H:%M}")
    return _failed(payment, f"{OUTCOME_UNKNOWN}: staff check it at the gateway")


def _failed(payment: Payment, error: str) -> Payment:
    state = PaymentState(
        reference="", status=Status.FAILED, amount=payment.amount, currency=payment.currency, error=error
    )
    return services.payment_apply_state(
        payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.CHARGE
    )


def payment_link_open(*, payment_id: int, description: str, customer_email: str) -> str:
    """Open a payment's checkout for a link sent to the customer (a renewal without a saved
    method); its address, or "" when the gateway cannot open one now (the caller tries again
    later: the payment stays `created`)."""
    try:
        payment = services.payment_start_checkout(
            payment_id=payment_id,
            return_url=settings.SITE_URL,  # the customer comes back to the site once paid
            description=description,
            customer_email=customer_email,
        )
    except GatewayError as exc:
        logger.warning("could not open a payment link", extra={"payment": payment_id, "error": str(exc)})
        return ""
    return payment.checkout_url
