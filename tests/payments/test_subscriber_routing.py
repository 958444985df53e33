"""A payment event runs only the subscribers of the app it is for: each group's consumer
applies the subscribers' `when` (the payment's purpose) before it hands anything to the pool."""

import pytest

from bookings import services as bookings
from core.models import OutboxEvent, ProcessedEvent
from payments import services as payments
from payments.gateways.base import Status
from tests.bookings.conftest import local
from tests.conftest import wait_for
from tests.factories import ResourceFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, gateway_reports, order_of

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def consuming_worker(settings, deliveries, celery_worker):
    assert settings.EVENTS_CONSUMER, "these tests follow the events consumer (TEST_EVENTS_CONSUMER)"
    return deliveries


def runs_for(deliveries, payment_id: str) -> set[str]:
    """The subscribers the pool ran for that payment's payment.completed."""
    event_ids = {
        str(event_id)
        for event_id in OutboxEvent.objects.filter(
            type="payment.completed", aggregate_id=payment_id
        ).values_list("event_id", flat=True)
    }
    assert event_ids, "no payment.completed for that payment"
    return {name for event_id, name, _, _ in deliveries if event_id in event_ids}


def test_an_order_payment_runs_nothing_of_bookings(consuming_worker):
    client = client_for(UserFactory())
    order = order_of(checkout(client, (VariantFactory().pk, 1)))

    gateway_reports(order.payment, Status.SUCCEEDED)

    wait_for(
        lambda: ProcessedEvent.objects.filter(subscriber="orders.on_payment_completed").exists(),
        what="the order's subscriber",
    )
    ran = runs_for(consuming_worker, order.payment.public_id)
    assert "orders.on_payment_completed" in ran
    assert not {name for name in ran if name.startswith("bookings.")}
    assert not ProcessedEvent.objects.filter(subscriber__startswith="bookings.").exists()


def test_a_booking_payment_runs_nothing_of_orders(consuming_worker):
    booking = bookings.booking_hold(
        customer_id=UserFactory().pk,
        resource_id=ResourceFactory().pk,
        starts_at=local(3, 10),
        ends_at=local(3, 11),
    )
    payment = payments.payment_start_checkout(
        payment_id=booking.payment_id, return_url="", description="", customer_email="c@example.com"
    )

    gateway_reports(payment, Status.SUCCEEDED)

    wait_for(
        lambda: ProcessedEvent.objects.filter(subscriber="bookings.payment_completed").exists(),
        what="the booking's subscriber",
    )
    ran = runs_for(consuming_worker, payment.public_id)
    assert "bookings.payment_completed" in ran
    assert not {name for name in ran if name.startswith("orders.")}
    assert not ProcessedEvent.objects.filter(subscriber__startswith="orders.").exists()
