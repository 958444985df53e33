"""Concurrent checkouts against PostgreSQL: stock is never oversold."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from orders.models import Order, Variant
from payments.models import Payment
from tests.factories import UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_fifty_concurrent_checkouts_for_ten_in_stock_make_exactly_ten_orders():
    variant = VariantFactory(stock_on_hand=10, low_stock_threshold=0)
    clients = []
    for _ in range(50):
        client = client_for(UserFactory())
        assert client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 1}).status_code == 201
        clients.append(client)
    start = threading.Barrier(50)

    def check_out(client):
        try:
            start.wait(timeout=30)
            return client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(check_out, clients))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [422] * 40, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"out_of_stock"}
    variant.refresh_from_db()
    assert (variant.stock_on_hand, variant.stock_reserved, variant.stock_available) == (10, 10, 0)
    assert Order.objects.count() == 10 and Payment.objects.count() == 10
    assert sum(line.quantity for order in Order.objects.all() for line in order.lines.all()) == 10


def test_overlapping_carts_checked_out_at_once_neither_deadlock_nor_oversell():
    """Carts holding the same variants: locks are taken in primary-key order, so no deadlock."""
    first, second = VariantFactory(stock_on_hand=6), VariantFactory(stock_on_hand=6)
    clients = []
    for i in range(12):
        client = client_for(UserFactory())
        order = (first, second) if i % 2 else (second, first)
        for variant in order:
            client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 1})
        clients.append(client)
    start = threading.Barrier(12)

    def check_out(client):
        try:
            start.wait(timeout=30)
            return client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = sorted(pool.map(check_out, clients))

    assert statuses == [201] * 6 + [422] * 6
    assert list(Variant.objects.order_by("pk").values_list("stock_reserved", flat=True)) == [6, 6]
