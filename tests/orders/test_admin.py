"""Staff work on orders in the admin: read-only pages whose buttons call the services (and ask
first where money or stock moves), the list with its columns, the CSV export."""

import csv
import io
from datetime import UTC, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from orders import services
from orders.models import Order, Variant
from orders.resources import OrderResource
from payments.gateways.base import Status
from payments.models import Refund
from tests.factories import StaffFactory, SuperuserFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, deliver, gateway_reports, order_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(SuperuserFactory())
    return client


@pytest.fixture
def customer():
    return UserFactory(email="anna@example.com")


def pay(order: Order) -> Order:
    gateway_reports(order.payment, Status.SUCCEEDED)
    deliver("payment.completed", payment_id=order.payment.public_id)
    order.refresh_from_db()
    return order


def page(client, order: Order) -> str:
    response = client.get(f"/admin/orders/order/{order.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def press(client, order: Order, action: str, data=None):
    return client.post(f"/admin/orders/order/{order.pk}/actions/{action}/", data or {}, follow=True)


def export_csv(client, changelist: str, resource, query: str = "") -> list[dict[str, str]]:
    """The rows of the list's CSV export (import-export: a form POST at <changelist>/export/,
    filtered by the list's query string, every column of the resource ticked)."""
    ticked = {f"{resource.__name__.lower()}_{name}": "on" for name in resource().get_export_order()}
    response = client.post(f"{changelist}export/{query}", {"format": "0", "resource": "0", **ticked})
    assert response.status_code == 200, response.content.decode()[:2000]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_list_shows_amounts_with_their_digits_customers_and_payments(staff_client, customer):
    order = order_of(checkout(client_for(customer), (VariantFactory(price="18.50").pk, 2)))

    listing = staff_client.get("/admin/orders/order/?q=anna%40example.com").content.decode()

    assert order.number in listing and "37.00 USD" in listing and "37.000" not in listing
    assert f"/admin/accounts/user/{customer.pk}/change/" in listing
    assert f"/admin/payments/payment/{order.payment_id}/change/" in listing
    assert (
        staff_client.get("/admin/orders/order/?status__exact=paid").content.decode().count(order.number) == 0
    )


def test_the_order_page_is_read_only_and_shows_payment_lines_audit_and_events(staff_client, customer):
    order = order_of(checkout(client_for(customer), (VariantFactory(price="18.50", sku="TRAIN-1").pk, 2)))
    html = page(staff_client, order)
    assert 'name="_save"' not in html
    assert order.payment.public_id in html and "order.created" in html and "pending_payment" in html
    assert "TRAIN-1" in html and "18.50 USD" in html and "37.00 USD" in html and "18.500" not in html
    # An unpaid order can be cancelled, not fulfilled.
    assert "actions/cancel/" in html and "actions/fulfil/" not in html


def test_fulfil_is_a_button_that_calls_the_service(staff_client, customer):
    order = pay(order_of(checkout(client_for(customer), (VariantFactory().pk, 1))))
    assert "actions/fulfil/" in page(staff_client, order)

    assert (
        staff_client.get(f"/admin/orders/order/{order.pk}/actions/fulfil/").status_code == 405
    )  # never a GET
    done = press(staff_client, order, "fulfil").content.decode()

    order.refresh_from_db()
    assert order.status == "fulfilled" and order.audit.last().actor.startswith("staff ")
    assert f"Order {order.number} fulfilled." in done
    assert "actions/fulfil/" not in page(staff_client, order)


def test_the_services_refusal_is_shown_as_a_message(staff_client, customer):
    unpaid = order_of(checkout(client_for(customer), (VariantFactory().pk, 1)))

    refused = press(staff_client, unpaid, "fulfil")  # posted although the button is not drawn

    assert refused.status_code == 200
    assert "An order cannot go from pending_payment to fulfilled." in refused.content.decode()
    assert Order.objects.get(pk=unpaid.pk).status == "pending_payment"


def test_cancel_asks_first_then_cancels_with_the_reason(staff_client, customer):
    variant = VariantFactory(stock_on_hand=10)
    order = order_of(checkout(client_for(customer), (variant.pk, 3)))
    url = f"/admin/orders/order/{order.pk}/actions/cancel/"

    asked = staff_client.get(url)
    assert asked.status_code == 200 and "Yes, cancel it" in asked.content.decode()
    assert 'name="reason"' in asked.content.decode()
    assert Order.objects.get(pk=order.pk).status == "pending_payment"

    done = staff_client.post(url, {"reason": "customer phoned"}, follow=True)

    assert done.redirect_chain[-1][0] == f"/admin/orders/order/{order.pk}/change/"
    order.refresh_from_db()
    assert order.status == "cancelled" and order.audit.last().note == "customer phoned"
    variant.refresh_from_db()
    assert variant.stock_reserved == 0


def test_a_late_payment_is_refunded_only_after_confirmation(staff_client, customer):
    variant = VariantFactory(stock_on_hand=10)
    order = order_of(checkout(client_for(customer), (variant.pk, 3)))
    Order.objects.filter(pk=order.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    services.order_expire(order_id=order.pk)
    order = pay(order)  # paid after it expired: held for staff
    html = page(staff_client, order)
    assert "actions/accept_late_payment/" in html and "actions/refund_late_payment/" in html

    asked = staff_client.get(f"/admin/orders/order/{order.pk}/actions/refund_late_payment/")
    assert "Yes, refund it" in asked.content.decode() and "75.00 USD" in asked.content.decode()
    assert not Refund.objects.exists()

    press(staff_client, order, "refund_late_payment")

    assert Refund.objects.get().payment_id == order.payment_id
    variant.refresh_from_db()
    assert variant.stock_reserved == 0
    refused = press(staff_client, order, "accept_late_payment").content.decode()
    assert "Only an expired order whose late payment succeeded" in refused


def test_resolving_the_flag_keeps_the_note(staff_client, customer):
    order = order_of(checkout(client_for(customer), (VariantFactory().pk, 1)))
    Order.objects.filter(pk=order.pk).update(needs_attention=True, attention_note="check the address")

    assert (
        "check the address"
        in staff_client.get(f"/admin/orders/order/{order.pk}/actions/resolve_flag/").content.decode()
    )
    press(staff_client, order, "resolve_flag", {"note": "address fixed"})

    order.refresh_from_db()
    assert not order.needs_attention and order.audit.last().note == "address fixed"


def test_staff_without_the_change_permission_see_no_button_and_are_refused(client, customer):
    order = pay(order_of(checkout(client_for(customer), (VariantFactory().pk, 1))))
    viewer = StaffFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)

    html = page(client, order)

    assert "actions/fulfil/" not in html and 'name="_save"' not in html
    assert client.post(f"/admin/orders/order/{order.pk}/actions/fulfil/").status_code == 403
    assert Order.objects.get(pk=order.pk).status == "paid"
    assert "mark_fulfilled" not in client.get("/admin/orders/order/").content.decode()


def test_mark_fulfilled_in_bulk_reports_each_refusal(staff_client, customer):
    shopper = client_for(customer)
    paid = pay(order_of(checkout(shopper, (VariantFactory().pk, 2))))
    unpaid = order_of(checkout(shopper, (VariantFactory().pk, 1)))

    response = staff_client.post(
        "/admin/orders/order/",
        {"action": "mark_fulfilled", "_selected_action": [paid.pk, unpaid.pk]},
        follow=True,
    ).content.decode()

    assert "1 order(s) marked fulfilled." in response
    assert f"{unpaid.number}: An order cannot go from pending_payment to fulfilled." in response
    assert Order.objects.get(pk=paid.pk).status == "fulfilled"


def test_the_csv_export_has_the_filtered_orders_for_the_accountant(staff_client, customer):
    shopper = client_for(customer)
    paid = pay(
        order_of(
            checkout(shopper, (VariantFactory(sku="TRAIN-1").pk, 2), (VariantFactory(sku="CAR-2").pk, 1))
        )
    )
    unpaid = order_of(checkout(shopper, (VariantFactory().pk, 1)))

    rows = export_csv(staff_client, "/admin/orders/order/", OrderResource, "?status__exact=paid")

    assert [row["number"] for row in rows] == [paid.number]
    row = rows[0]
    assert (row["customer_email"], row["status"], row["total"], row["currency"]) == (
        "anna@example.com",
        "paid",
        "75.00",
        "USD",
    )
    assert row["items"] == "TRAIN-1 x 2; CAR-2 x 1"
    assert row["payment_id"] == paid.payment.public_id
    assert row["paid_at"] == paid.paid_at.astimezone(UTC).isoformat(timespec="seconds")
    assert unpaid.number in {
        r["number"] for r in export_csv(staff_client, "/admin/orders/order/", OrderResource)
    }


def test_the_product_admin_lists_low_stock(staff_client):
    low = VariantFactory(stock_on_hand=1, low_stock_threshold=2)
    VariantFactory(stock_on_hand=10, low_stock_threshold=2)
    listing = staff_client.get("/admin/orders/product/?stock=low").content.decode()
    assert low.product.name in listing and "1 product" in listing
    assert Variant.objects.count() == 2
