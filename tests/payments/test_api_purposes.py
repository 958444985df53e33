"""POST /api/payments and /api/payments/batch for each registered purpose: only the caller's
own, payable items, priced by the server; everything else is refused with nothing created."""

import uuid

import pytest
from rest_framework.test import APIClient

from bookings import services as bookings
from core.events import Event
from core.events.registry import subscribers_for
from core.models import OutboxEvent
from orders import services as orders
from payments import policy
from payments import services as payments
from payments.gateways.base import RefundResult, Status
from payments.models import Payment, Refund
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, deliver, gateway_reports, order_of

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def pay_for(user, purpose: str, item_id: str):
    return client_for(user).post(
        "/api/payments",
        {"purpose": purpose, "purpose_id": item_id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


def an_order(customer):
    return order_of(checkout(client_for(customer), (VariantFactory(price="12.50").pk, 2)))


def a_booking(customer):
    return bookings.booking_hold(
        customer_id=customer.pk,
        resource_id=ResourceFactory().pk,
        starts_at=local(3, 10),
        ends_at=local(3, 12),
    )


def refused(response, code: str) -> None:
    assert response.status_code == 422, response.json()
    assert response.json()["code"] == code


# --- orders --------------------------------------------------------------------------------
def test_an_order_is_paid_at_its_own_total():
    customer = UserFactory()
    order = an_order(customer)

    response = pay_for(customer, "order", order.number)

    assert response.status_code == 201
    body = response.json()
    assert (body["amount"], body["currency"], body["purpose"]) == ("25.00", order.currency, "order")
    assert [a["purpose_id"] for a in body["allocations"]] == [order.number]
    assert body["id"] == order.payment.public_id  # its open payment at that gateway, reused


def test_an_unknown_order_is_refused():
    before = Payment.objects.count()
    refused(pay_for(UserFactory(), "order", "NOPE-NOPE"), "item_not_found")
    assert Payment.objects.count() == before


def test_another_customers_order_is_refused_and_its_audit_untouched():
    order = an_order(UserFactory())
    audit_rows = order.audit.count()
    payments = Payment.objects.count()

    refused(pay_for(UserFactory(), "order", order.number), "item_not_found")

    assert (order.audit.count(), Payment.objects.count()) == (audit_rows, payments)


def test_a_cancelled_order_is_refused():
    customer = UserFactory()
    order = an_order(customer)
    orders.order_cancel(order_id=order.pk, actor="customer")

    response = pay_for(customer, "order", order.number)

    refused(response, "item_not_payable")
    assert "cancelled" in response.json()["message"]


def test_a_paid_order_is_refused():
    customer = UserFactory()
    order = an_order(customer)
    gateway_reports(order.payment, Status.SUCCEEDED)
    refused(pay_for(customer, "order", order.number), "item_already_paid")  # paid, not yet applied
    deliver("payment.completed", payment_id=order.payment.public_id)
    refused(pay_for(customer, "order", order.number), "item_already_paid")


# --- bookings ------------------------------------------------------------------------------
def test_a_held_booking_is_paid_at_its_amount_due():
    customer = UserFactory()
    booking = a_booking(customer)

    response = pay_for(customer, "booking", booking.public_id)

    assert response.status_code == 201
    assert (response.json()["amount"], response.json()["kind"]) == ("24.00", "deposit")


def test_an_unknown_booking_is_refused():
    refused(pay_for(UserFactory(), "booking", "bkg_nope"), "item_not_found")


def test_another_customers_booking_is_refused():
    refused(pay_for(UserFactory(), "booking", a_booking(UserFactory()).public_id), "item_not_found")


def test_a_cancelled_booking_is_refused():
    customer = UserFactory()
    booking = a_booking(customer)
    bookings.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)

    refused(pay_for(customer, "booking", booking.public_id), "item_not_payable")


def test_a_booking_paid_at_the_desk_is_refused():
    customer = UserFactory()
    booking = a_booking(customer)
    bookings.booking_confirm(booking_id=booking.pk, actor_id=None, paid_in_cash=True)

    refused(pay_for(customer, "booking", booking.public_id), "item_already_paid")


# --- purposes not registered, batches ------------------------------------------------------
def test_an_unregistered_purpose_cannot_be_paid():
    customer = UserFactory()
    refused(pay_for(customer, "gift-card", "42"), "purpose_not_registered")
    response = client_for(customer).post(
        "/api/payments/batch",
        {"purpose": "gift-card", "item_ids": ["1", "2"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="b",
    )
    refused(response, "purpose_not_registered")
    assert not Payment.objects.exists()


def test_an_unknown_invoice_is_refused():
    refused(pay_for(UserFactory(), "subscription", "INV-NOPE-NOPE"), "item_not_found")


def test_a_batch_of_orders_is_priced_each_and_refused_whole_for_one_bad_item():
    customer = UserFactory()
    first, second = an_order(customer), an_order(customer)
    foreign = an_order(UserFactory())
    payments_before = Payment.objects.count()
    created_before = OutboxEvent.objects.filter(type="payment.created").count()

    def batch(*numbers):
        return client_for(customer).post(
            "/api/payments/batch",
            {"purpose": "order", "item_ids": list(numbers)},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )

    refused(batch(first.number, foreign.number), "item_not_found")
    refused(batch(first.number, first.number), "item_repeated")
    refused(batch(first.number, "NOPE-NOPE"), "item_not_found")
    assert Payment.objects.count() == payments_before
    assert OutboxEvent.objects.filter(type="payment.created").count() == created_before

    response = batch(first.number, second.number)
    assert response.status_code == 201
    assert response.json()["amount"] == "50.00"


# --- what the apps do with payments opened here ----------------------------------------------
def run_subscribers(event_type: str, payment_id: str) -> None:
    """Every in-project subscriber the relay would enqueue for the newest such event, in this
    thread, as the worker would (the e2e tests use the worker)."""
    row = OutboxEvent.objects.filter(type=event_type, data__payment_id=payment_id).order_by("-seq").first()
    event = Event.from_envelope(row.envelope)
    for subscriber in subscribers_for(event_type):
        if subscriber.accepts(event.data) and not subscriber.name.startswith("tests."):
            subscriber.func(event)


def batch(customer, purpose: str, *item_ids: str):
    return client_for(customer).post(
        "/api/payments/batch",
        {"purpose": purpose, "item_ids": list(item_ids)},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


def test_a_batch_of_booking_deposits_leaves_each_booking_deposit_paid():
    customer = UserFactory()
    first = a_booking(customer)
    second = bookings.booking_hold(
        customer_id=customer.pk, resource_id=first.resource_id, starts_at=local(4, 10), ends_at=local(4, 12)
    )
    response = batch(customer, "booking", first.public_id, second.public_id)
    assert response.status_code == 201 and response.json()["amount"] == "48.00"
    payment = Payment.objects.get(public_id=response.json()["id"])

    gateway_reports(payment, Status.SUCCEEDED)
    run_subscribers("payment.completed", payment.public_id)

    for booking in (first, second):
        booking.refresh_from_db()
        assert (booking.status, booking.payment_status) == ("confirmed", "deposit_paid")
        assert booking.payment_id == payment.pk
        assert Payment.objects.get(pk=booking.payment.pk).status == "succeeded"
    assert not Refund.objects.exists()


def test_a_refund_of_one_order_of_a_batch_leaves_the_other_paid(celery_app_without_worker):
    customer = UserFactory()
    kept, returned = an_order(customer), an_order(customer)
    payment = Payment.objects.get(
        public_id=batch(customer, "order", kept.number, returned.number).json()["id"]
    )
    gateway_reports(payment, Status.SUCCEEDED)
    run_subscribers("payment.completed", payment.public_id)
    allocation = payment.allocations.get(purpose_id=returned.number)
    refund = payments.refund_reserve(
        payment_id=payment.pk,
        amount=None,
        reason="returned",
        idempotency_key="r-1",
        requested_by_id=None,
        allocation_id=allocation.pk,
    )
    payments.refund_apply_result(
        refund_id=refund.pk, result=RefundResult("re-1", Status.SUCCEEDED, refund.amount, refund.currency)
    )

    run_subscribers("payment.refunded", payment.public_id)

    kept.refresh_from_db()
    returned.refresh_from_db()
    assert (kept.status, returned.status) == ("paid", "refunded")
    assert not kept.audit.filter(note__contains="refund").exists()


def test_cancelling_an_order_closes_every_payment_opened_for_it(settings):
    customer = UserFactory()
    order = an_order(customer)
    assert pay_for(customer, "order", order.number).json()["id"] == order.payment.public_id  # reused
    settings.PAYMENT_ENV = "test"  # gateways as asked: a second payment, at another gateway
    elsewhere = policy.payment_open(
        customer_id=customer.pk, purpose="order", item_ids=[order.number], gateway="paystack"
    )
    assert elsewhere.pk != order.payment_id

    orders.order_cancel(order_id=order.pk, actor="customer")

    assert list(
        Payment.objects.filter(pk__in=[order.payment_id, elsewhere.pk]).values_list("status", flat=True)
    ) == [
        "expired",
        "expired",
    ]
