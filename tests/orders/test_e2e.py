"""End to end with a real worker: cart -> checkout -> sandbox pay -> order paid, through
RabbitMQ, the outbox relay and the orders subscribers. Cancel and expiry return stock."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from core.models import OutboxEvent, ProcessedEvent
from orders.models import Order, Variant
from orders.tasks import expire_overdue
from tests.conftest import wait_for
from tests.factories import UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, order_of

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


def stock(variant) -> tuple[int, int]:
    variant.refresh_from_db()
    return variant.stock_on_hand, variant.stock_reserved


def status_of(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def test_cart_to_paid_order_through_the_sandbox_and_events(site, celery_worker, client):
    variant = VariantFactory(price="25.00", stock_on_hand=10)
    customer = client_for(UserFactory())
    response = checkout(customer, (variant.pk, 2))
    assert response.status_code == 201, response.json()
    order = order_of(response)
    assert stock(variant) == (10, 2)

    page = response.json()["checkout_url"].removeprefix(site.url)
    assert b"50.00 USD" in client.get(page).content
    client.post(page, {"action": "pay"})

    wait_for(lambda: status_of(order) == "paid", timeout=60, what="the order to be paid")
    assert stock(variant) == (8, 0)
    order.refresh_from_db()
    assert order.payment.status == "succeeded" and order.stock_state == "sold"
    assert customer.get(f"/api/orders/{order.number}").json()["status"] == "paid"
    assert ProcessedEvent.objects.filter(subscriber="orders.on_payment_completed").count() == 1
    wait_for(
        lambda: OutboxEvent.objects.filter(
            aggregate_id=order.number, type="order.paid", published_at__isnull=False
        ),
        what="order.paid to be published",
    )


def test_a_declined_payment_leaves_the_order_payable_with_its_error(site, celery_worker, client):
    variant = VariantFactory(stock_on_hand=5)
    order = order_of(checkout(client_for(UserFactory()), (variant.pk, 1)))
    client.post(order.payment.checkout_url.removeprefix(site.url), {"action": "decline"})

    wait_for(lambda: Order.objects.get(pk=order.pk).payment_error, timeout=60, what="the error on the order")
    assert status_of(order) == "pending_payment" and stock(variant) == (5, 1)


def test_cancel_and_expiry_return_the_stock(site, celery_worker):
    variant = VariantFactory(stock_on_hand=10)
    customer = client_for(UserFactory())
    cancelled = order_of(checkout(customer, (variant.pk, 3)))
    expiring = order_of(checkout(customer, (variant.pk, 4)))
    assert stock(variant) == (10, 7)

    assert customer.post(f"/api/orders/{cancelled.number}/cancel").json()["status"] == "cancelled"
    assert stock(variant) == (10, 4)

    Order.objects.filter(pk=expiring.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    result = expire_overdue.apply_async()  # what beat sends; the worker runs it
    assert result.id
    wait_for(lambda: status_of(expiring) == "expired", timeout=30, what="beat's expiry to run in the worker")
    assert stock(variant) == (10, 0)
    assert Variant.objects.get(pk=variant.pk).stock_available == 10
