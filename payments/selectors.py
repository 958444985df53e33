"""Reads on payments that are more than one line."""

from django.db.models import QuerySet

from core.errors import InvalidInput
from payments.errors import PaymentErrorCode
from payments.models import Payment


def payments_visible_to(user) -> QuerySet[Payment]:
    """Staff see every payment; a customer only their own."""
    queryset = (
        Payment.objects.select_related("customer").prefetch_related("allocations").order_by("-created_at")
    )
    return queryset if user.is_staff else queryset.filter(customer=user)


def allocation_of(payment: Payment, item_id: str) -> int:
    """The id of the payment's allocation to `item_id`; a 400 naming the field if it pays no such item."""
    allocation_id = payment.allocations.filter(purpose_id=item_id).values_list("pk", flat=True).first()
    if allocation_id is None:
        raise InvalidInput(
            f"Payment {payment.public_id} pays for no item {item_id!r}.",
            code=PaymentErrorCode.UNKNOWN_ALLOCATION,
            extra={"fields": {"item_id": ["not paid by this payment"]}},
        )
    return allocation_id


def payments_with_allocations() -> QuerySet[Payment]:
    """Every payment with what it pays for, for another app to read (e.g. a template's preview)."""
    return Payment.objects.prefetch_related("allocations")


def payment_pk(public_id: str) -> int | None:
    """The database id of a payment (for a link to its admin page), or None."""
    return Payment.objects.filter(public_id=public_id).values_list("pk", flat=True).first()
