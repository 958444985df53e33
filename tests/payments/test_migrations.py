"""The move to allocations keeps existing payments whole: purpose_ids become allocations split in
the currency's units, refunds become shares, and orders and bookings settle the outcomes of
completions they already applied, leaving those still on their way open."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from orders.models import Order
from payments.models import Payment, PaymentAllocation, RefundShare
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("payments", "0001_initial"), ("orders", "0001_initial"), ("bookings", "0001_initial")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def before_allocations():
    """The database as it was before allocations; back to the latest state afterwards."""
    old = migrate(BEFORE)
    yield old
    latest()


def old_payment(old, customer, *, purpose, ids, amount, status="succeeded", currency="USD", **fields):
    return old.get_model("payments", "Payment").objects.create(
        customer_id=customer.pk,
        amount=Decimal(amount),
        currency=currency,
        gateway="sandbox",
        status=status,
        purpose=purpose,
        purpose_ids=ids,
        deadline=timezone.now() + timedelta(minutes=30),
        **fields,
    )


def an_order(customer, payment, **fields) -> Order:
    return Order.objects.create(
        customer=customer,
        currency="USD",
        total=payment.amount,
        deadline=timezone.now() + timedelta(minutes=30),
        payment_id=payment.pk,
        **fields,
    )


def test_existing_payments_get_their_allocations_and_settled_outcomes(before_allocations):
    old = before_allocations
    customer = UserFactory()
    batch = old_payment(old, customer, purpose="subscription", ids=["s-1", "s-2", "s-3"], amount="10.01")
    old.get_model("payments", "Refund").objects.create(
        payment=batch, amount=Decimal("3.00"), currency="USD", full=False, reason="x", idempotency_key="k-1"
    )
    paid = old_payment(old, customer, purpose="order", ids=["PAID-0001"], amount="20.00")
    an_order(customer, paid, number="PAID-0001", status="paid", stock_state="sold")
    in_flight = old_payment(old, customer, purpose="order", ids=["WAIT-0001"], amount="20.00")
    an_order(customer, in_flight, number="WAIT-0001")  # its payment.completed not applied yet
    held = old_payment(old, customer, purpose="order", ids=["LATE-0001"], amount="20.00")
    an_order(customer, held, number="LATE-0001", status="expired", needs_attention=True)
    refused = old_payment(old, customer, purpose="order", ids=["GONE-0001"], amount="20.00")
    an_order(customer, refused, number="GONE-0001", status="cancelled", stock_state="released")
    old.get_model("payments", "Refund").objects.create(
        payment=refused,
        amount=refused.amount,
        currency="USD",
        full=True,
        reason="order GONE-0001: paid after it was cancelled: refunded",
        idempotency_key=f"order:GONE-0001:{refused.public_id}",
    )
    booked = old_payment(old, customer, purpose="booking", ids=["bkg_old"], amount="24.00", kind="deposit")
    booking = old.get_model("bookings", "Booking").objects.create(  # the table as it was then
        public_id="bkg_old",
        resource_id=ResourceFactory().pk,
        customer_id=customer.pk,
        starts_at=local(3, 10),
        ends_at=local(3, 12),
        status="confirmed",
        payment_status="deposit_paid",
        payment_kind="deposit",
        amount_total=Decimal("80.00"),
        amount_due=Decimal("24.00"),
        currency="EUR",
        payment_id=booked.pk,
    )
    old.get_model("bookings", "BookingAudit").objects.create(
        booking_id=booking.pk, source="payment", note="payment completed"
    )

    latest()

    def allocations(payment):
        return list(
            PaymentAllocation.objects.filter(payment_id=payment.pk)
            .order_by("pk")
            .values_list("purpose_id", "amount", "kind", "outcome")
        )

    assert allocations(batch) == [
        ("s-1", Decimal("3.340"), "full", "open"),
        ("s-2", Decimal("3.340"), "full", "open"),
        ("s-3", Decimal("3.330"), "full", "open"),
    ]
    assert (
        list(RefundShare.objects.filter(refund__payment_id=batch.pk).values_list("amount", flat=True))
        == [Decimal("1.000")] * 3
    )
    assert RefundShare.objects.get(refund__payment_id=refused.pk).amount == Decimal("20.000")
    assert allocations(paid)[0][3] == "accepted"
    assert allocations(in_flight)[0][3] == "open"  # its completion, when it arrives, pays the order
    assert allocations(held)[0][3] == "held"
    assert allocations(refused)[0][3] == "refused"
    assert allocations(booked) == [("bkg_old", Decimal("24.000"), "deposit", "accepted")]
    assert Payment.objects.get(pk=batch.pk).purpose == "subscription"


def test_going_back_restores_purpose_ids(before_allocations):
    old = before_allocations
    payment = old_payment(old, UserFactory(), purpose="subscription", ids=["s-1", "s-2"], amount="9.00")
    latest()

    old = migrate(BEFORE)

    assert old.get_model("payments", "Payment").objects.get(pk=payment.pk).purpose_ids == ["s-1", "s-2"]
