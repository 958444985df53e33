"""Cart and checkout through the API: validation, stock held, payment opened, idempotency."""

import uuid

import pytest
from rest_framework.test import APIClient

from core.models import OutboxEvent
from orders.models import Order, Variant
from payments.models import Payment
from tests.factories import UserFactory
from tests.orders.factories import ProductFactory, VariantFactory
from tests.orders.helpers import checkout, client_for, deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return UserFactory()


@pytest.fixture
def client(customer):
    return client_for(customer)


def test_cart_adds_up_and_shows_totals(client):
    train = VariantFactory(price="25.00")
    blocks = VariantFactory(price="7.50")
    client.post("/api/cart/items", {"variant_id": train.pk, "quantity": 1})
    client.post("/api/cart/items", {"variant_id": train.pk, "quantity": 2})
    response = client.post("/api/cart/items", {"variant_id": blocks.pk})

    assert response.status_code == 201
    cart = client.get("/api/cart").json()
    assert [(i["variant"]["sku"], i["quantity"], i["line_total"]) for i in cart["items"]] == [
        (train.sku, 3, "75.00"),
        (blocks.sku, 1, "7.50"),
    ]
    assert (cart["total"], cart["currency"]) == ("82.50", "USD")


def test_cart_item_quantity_can_be_changed_and_removed(client):
    variant = VariantFactory()
    item_id = client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 2}).json()["items"][0][
        "id"
    ]

    assert client.patch(f"/api/cart/items/{item_id}", {"quantity": 5}).json()["items"][0]["quantity"] == 5
    assert client.delete(f"/api/cart/items/{item_id}").json()["items"] == []
    assert client.patch(f"/api/cart/items/{item_id}", {"quantity": 1}).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"variant_id": 999999, "quantity": 1}, 400, "unknown_variant", "variant_id"),
        ({"variant_id": "VARIANT", "quantity": 1}, 400, "invalid", "variant_id"),
        ({"quantity": 0}, 400, "invalid", "quantity"),
        ({"quantity": -3}, 400, "invalid", "quantity"),
        ({"quantity": 11}, 422, "out_of_stock", "quantity"),
        ({"quantity": 101}, 400, "invalid", "quantity"),
    ],
)
def test_bad_cart_items_are_refused_naming_the_field(client, body, status, code, field):
    variant = VariantFactory(stock_on_hand=10)
    response = client.post("/api/cart/items", {"variant_id": variant.pk, **body})

    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert field in response.json()["extra"]["fields"]
    assert client.get("/api/cart").json()["items"] == []


@pytest.mark.parametrize("inactive", ["product", "variant", "category"])
def test_what_is_not_on_sale_cannot_be_added(client, inactive):
    variant = VariantFactory()
    target = {"product": variant.product, "variant": variant, "category": variant.product.category}[inactive]
    target.is_active = False
    target.save()

    response = client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 1})

    if inactive == "category":  # a hidden category hides its products from the catalogue only
        assert response.status_code == 201
        return
    assert response.status_code == 422
    assert response.json()["code"] == "not_on_sale"
    assert "variant_id" in response.json()["extra"]["fields"]


def test_one_currency_per_cart(client):
    client.post("/api/cart/items", {"variant_id": VariantFactory(currency="USD").pk})
    response = client.post("/api/cart/items", {"variant_id": VariantFactory(currency="EUR").pk})
    assert response.status_code == 422
    assert response.json()["code"] == "currency_mismatch"


def test_checkout_holds_stock_creates_the_order_and_opens_the_payment(client, customer):
    variant = VariantFactory(price="25.00", stock_on_hand=10)
    response = checkout(client, (variant.pk, 3))

    assert response.status_code == 201, response.json()
    body = response.json()
    order = Order.objects.get(number=body["number"])
    assert body["status"] == order.status == "pending_payment"
    assert body["total"] == "75.00" and body["currency"] == "USD"
    assert body["checkout_url"] == order.payment.checkout_url and "/pay/sandbox/" in body["checkout_url"]
    assert [(line["sku"], line["quantity"], line["unit_price"]) for line in body["lines"]] == [
        (variant.sku, 3, "25.00")
    ]
    payment = order.payment
    assert (payment.status, payment.purpose) == ("pending", "order")
    assert [(a.purpose_id, a.amount) for a in payment.allocations.all()] == [(order.number, order.total)]
    assert payment.amount == order.total and payment.customer_id == customer.pk
    assert abs((payment.deadline - order.deadline).total_seconds()) < 61
    variant.refresh_from_db()
    assert (variant.stock_on_hand, variant.stock_reserved) == (10, 3)
    assert client.get("/api/cart").json()["items"] == []
    assert OutboxEvent.objects.filter(type="order.created", aggregate_id=order.number).count() == 1
    assert [(a.from_status, a.to_status) for a in order.audit.all()] == [("", "pending_payment")]


def test_a_retried_checkout_gets_the_same_order(client):
    variant = VariantFactory()
    key = str(uuid.uuid4())
    first = checkout(client, (variant.pk, 2), key=key)
    again = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY=key)

    assert again.status_code == 201 and again.headers["Idempotent-Replay"] == "true"
    assert again.json()["number"] == first.json()["number"]
    assert Order.objects.count() == 1 and Payment.objects.count() == 1
    assert Variant.objects.get(pk=variant.pk).stock_reserved == 2


def test_checkout_needs_an_idempotency_key(client):
    client.post("/api/cart/items", {"variant_id": VariantFactory().pk})
    response = client.post("/api/checkout", {})
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_missing"


def test_an_empty_cart_cannot_be_checked_out(client):
    response = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 422 and response.json()["code"] == "cart_empty"


def test_stock_gone_since_it_was_added_reserves_nothing(client):
    scarce = VariantFactory(stock_on_hand=2)
    plenty = VariantFactory(stock_on_hand=50)
    client.post("/api/cart/items", {"variant_id": plenty.pk, "quantity": 5})
    client.post("/api/cart/items", {"variant_id": scarce.pk, "quantity": 2})
    Variant.objects.filter(pk=scarce.pk).update(stock_on_hand=1)

    response = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k2")

    assert response.status_code == 422
    assert response.json()["code"] == "out_of_stock"
    assert response.json()["extra"]["available"] == {scarce.sku: 1}
    assert Order.objects.count() == 0 and Payment.objects.count() == 0
    assert list(Variant.objects.order_by("pk").values_list("stock_reserved", flat=True)) == [0, 0]
    assert len(client.get("/api/cart").json()["items"]) == 2  # the cart is kept to be fixed


def test_a_product_deactivated_after_it_was_added_cannot_be_checked_out(client):
    variant = VariantFactory(product=ProductFactory())
    client.post("/api/cart/items", {"variant_id": variant.pk})
    variant.product.is_active = False
    variant.product.save()

    response = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k3")
    assert response.status_code == 422 and response.json()["code"] == "not_on_sale"
    assert "items[0].variant_id" in response.json()["extra"]["fields"]
    assert Variant.objects.get(pk=variant.pk).stock_reserved == 0


def test_customers_see_only_their_own_orders(client):
    mine = checkout(client, (VariantFactory().pk, 1)).json()["number"]
    stranger = client_for(UserFactory())
    theirs = checkout(stranger, (VariantFactory().pk, 1)).json()["number"]

    assert [o["number"] for o in client.get("/api/orders").json()["results"]] == [mine]
    assert client.get(f"/api/orders/{theirs}").status_code == 404
    assert client.post(f"/api/orders/{theirs}/cancel").status_code == 404
    assert client.get(f"/api/orders/{mine}").json()["status"] == "pending_payment"


def test_staff_see_every_order(client):
    checkout(client, (VariantFactory().pk, 1))
    checkout(client_for(UserFactory()), (VariantFactory().pk, 1))
    staff = client_for(UserFactory(is_staff=True))
    assert staff.get("/api/orders").json()["count"] == 2


def test_anonymous_cannot_use_the_cart(db):
    assert APIClient().get("/api/cart").status_code == 401
    assert APIClient().post("/api/checkout", {}).status_code == 401


@pytest.fixture
def gateway(monkeypatch):
    """Make the sandbox's create_checkout fail (transiently or not) until restored."""
    from payments.gateways.base import GatewayError
    from payments.gateways.sandbox import SandboxGateway

    real = SandboxGateway.create_checkout

    class Switch:
        def fail(self, *, transient: bool):
            def create_checkout(self, request):
                raise GatewayError("sandbox: no", transient=transient, code="refused")

            monkeypatch.setattr(SandboxGateway, "create_checkout", create_checkout)

        def restore(self):
            monkeypatch.setattr(SandboxGateway, "create_checkout", real)

    return Switch()


def test_a_gateway_that_is_down_is_a_503_and_the_retry_opens_the_same_orders_checkout(client, gateway):
    variant = VariantFactory(stock_on_hand=5)
    client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 2})
    gateway.fail(transient=True)

    first = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k-503")

    assert first.status_code == 503 and first.json()["code"] == "gateway_unavailable"
    assert Variant.objects.get(pk=variant.pk).stock_reserved == 2  # the order waits for its checkout
    gateway.restore()
    again = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k-503")
    assert again.status_code == 201 and again.json()["payment"]["status"] == "pending"
    assert Order.objects.count() == 1 and Payment.objects.count() == 1


def test_a_gateway_refusal_closes_that_payment_and_the_order_can_be_paid_again(client, gateway):
    variant = VariantFactory(stock_on_hand=5)
    client.post("/api/cart/items", {"variant_id": variant.pk, "quantity": 2})
    gateway.fail(transient=False)

    refused = client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY="k-422")

    assert refused.status_code == 422 and refused.json()["code"] == "gateway_refused"
    order = Order.objects.get()
    assert order.payment.public_id == refused.json()["extra"]["payment"]
    assert order.payment.status == "cancelled"
    deliver("payment.cancelled", payment_id=order.payment.public_id, reason="gateway_refused")
    order.refresh_from_db()
    assert order.status == "pending_payment" and "checkout refused" in order.payment_error
    gateway.restore()
    retry = client.post(f"/api/orders/{order.number}/pay", {}, HTTP_IDEMPOTENCY_KEY="k-pay")
    assert retry.status_code == 201 and retry.json()["payment"]["status"] == "pending"
    assert Payment.objects.count() == 2


def test_with_redis_down_the_cart_checkout_and_orders_still_work(client, settings):
    variant = VariantFactory(stock_on_hand=5)
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    response = checkout(client, (variant.pk, 1))

    assert response.status_code == 201, response.json()
    assert client.get("/api/orders").status_code == 200
    login = APIClient().post("/api/auth/token", {"email": "x@example.com", "password": "nope"})
    assert login.status_code == 503 and login.json()["code"] == "rate_limit_unavailable"
