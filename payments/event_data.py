"""The data of payment.* events: what a payment is and what it pays for, as subscribers read it."""

from typing import Any

from core.money import quantize
from payments.models import Payment, PaymentAllocation


def allocations_data(allocations: list[PaymentAllocation], currency: str) -> list[dict[str, Any]]:
    return [
        {
            "purpose": a.purpose,
            "purpose_id": a.purpose_id,
            "amount": quantize(a.amount, currency),
            "refunded_amount": quantize(a.refunded_amount, currency),
            "kind": a.kind,
            "outcome": a.outcome,  # what the item did with the money: open, accepted, held, refused
        }
        for a in allocations
    ]


def payment_event_data(
    payment: Payment, allocations: list[PaymentAllocation] | None = None, **extra: Any
) -> dict[str, Any]:
    """payment.* data: what the payment pays for is in `allocations`; a one-item payment also
    names it in `purpose_id`, as consumers of earlier versions expect."""
    if allocations is None:
        allocations = list(payment.allocations.all())
    data = {
        "payment_id": payment.public_id,
        "purpose": payment.purpose,
        "customer_id": payment.customer_id,
        "amount": quantize(payment.amount, payment.currency),  # the column keeps 3 decimals for all
        "currency": payment.currency,
        "kind": payment.kind,
        "status": payment.status,
        "allocations": allocations_data(allocations, payment.currency),
    }
    if len(allocations) == 1:
        data["purpose_id"] = allocations[0].purpose_id
    if payment.saved_method_id:
        data["off_session"] = True  # charged to a saved method, without the customer
    return data | extra
