"""A payment event reaches only the app it is for: the relay filters subscribers by purpose
before anything is enqueued (counted on the broker's queues, no worker running)."""

import pytest

from bookings import services as bookings
from config.celery import app as celery_app
from core.events.relay import relay_run
from core.models import OutboxEvent, ProcessedEvent
from payments import services as payments
from payments.gateways.base import Status
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, gateway_reports, order_of

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def queue_depth(name: str) -> int:
    with celery_app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


def relay_only(event_type: str) -> None:
    """Relay what is waiting, empty the queues, then relay the new `event_type` alone."""
    completed = list(OutboxEvent.objects.filter(type=event_type, published_at__isnull=True))
    assert len(completed) == 1
    OutboxEvent.objects.filter(published_at__isnull=True).exclude(pk=completed[0].pk).update(
        published_at=completed[0].occurred_at
    )
    celery_app.control.purge()
    result = relay_run(force=True)
    assert result.published == 1 and not result.failed


@pytest.fixture
def empty_queues(celery_app_without_worker):
    celery_app_without_worker.control.purge()
    yield


def test_an_order_payment_enqueues_nothing_for_bookings(empty_queues):
    client = client_for(UserFactory())
    order = order_of(checkout(client, (VariantFactory().pk, 1)))

    gateway_reports(order.payment, Status.SUCCEEDED)
    relay_only("payment.completed")

    assert queue_depth("orders") == 1  # orders.on_payment_completed
    assert queue_depth("bookings") == 0
    assert not ProcessedEvent.objects.exists()


def test_a_booking_payment_enqueues_nothing_for_orders(empty_queues):
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
    relay_only("payment.completed")

    assert queue_depth("bookings") == 1  # bookings.payment_completed
    assert queue_depth("orders") == 0
    assert not ProcessedEvent.objects.exists()
