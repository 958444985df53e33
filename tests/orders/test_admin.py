"""Staff work on orders in the admin: the actions call the services."""

import pytest

from orders.models import Order, Variant
from payments.gateways.base import Status
from tests.factories import SuperuserFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, deliver, gateway_reports, order_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(SuperuserFactory())
    return client


def act(staff_client, action: str, *orders: Order):
    return staff_client.post(
        "/admin/orders/order/",
        {"action": action, "_selected_action": [o.pk for o in orders]},
        follow=True,
    )


def test_mark_fulfilled_and_cancel_actions(staff_client):
    variant = VariantFactory(stock_on_hand=10)
    customer = client_for(UserFactory())
    paid = order_of(checkout(customer, (variant.pk, 2)))
    gateway_reports(paid.payment, Status.SUCCEEDED)
    deliver("payment.completed", payment_id=paid.payment.public_id)
    unpaid = order_of(checkout(customer, (variant.pk, 3)))

    act(staff_client, "mark_fulfilled", paid)
    response = act(staff_client, "cancel", unpaid, paid)

    paid.refresh_from_db()
    unpaid.refresh_from_db()
    assert (paid.status, unpaid.status) == ("fulfilled", "cancelled")
    assert f"{paid.number}: An order cannot go from fulfilled to cancelled." in response.content.decode()
    variant.refresh_from_db()
    assert (variant.stock_on_hand, variant.stock_reserved) == (8, 0)
    assert paid.audit.last().actor.startswith("staff ")


def test_the_order_page_shows_payment_audit_and_events(staff_client):
    order = order_of(checkout(client_for(UserFactory()), (VariantFactory().pk, 1)))
    page = staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert order.payment.public_id in page
    assert "order.created" in page
    assert "pending_payment" in page


def test_the_product_admin_lists_low_stock(staff_client):
    low = VariantFactory(stock_on_hand=1, low_stock_threshold=2)
    VariantFactory(stock_on_hand=10, low_stock_threshold=2)
    page = staff_client.get("/admin/orders/product/?stock=low").content.decode()
    assert low.product.name in page and "1 product" in page
    assert Variant.objects.count() == 2
