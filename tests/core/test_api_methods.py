"""Each endpoint answers only its documented methods.

Any other method gets 405 with the error body and an Allow header naming the documented
ones, and changes nothing; the OpenAPI schema has exactly the operations the API answers.
Action endpoints (`/orders/<number>/cancel`, `/bookings/<id>/confirm`, ...) no longer inherit
their detail view's GET and DELETE.
"""

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient

from bookings import services as bookings
from bookings.models import Booking, BookingAudit
from core.models import IdempotencyRecord, OutboxEvent
from notifications.models import Notification
from orders.models import Order, OrderAudit
from payments.models import Payment, Refund
from subscriptions import services as subscriptions
from subscriptions.models import Subscription
from tests.bookings.conftest import local
from tests.core.test_schema_accuracy import openapi
from tests.factories import GadgetFactory, ResourceFactory, SuperuserFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, order_of
from tests.subscriptions.factories import ChildFactory, PlanFactory

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Every route that acts on one thing (a literal segment after the thing's id), and the one
# method it answers. A new action route must be added here.
ACTIONS = {
    "api/orders/<str:number>/audit": "GET",
    "api/orders/<str:number>/cancel": "POST",
    "api/orders/<str:number>/pay": "POST",
    "api/orders/<str:number>/fulfil": "POST",
    "api/bookings/<str:booking_id>/confirm": "POST",
    "api/bookings/<str:booking_id>/complete": "POST",
    "api/bookings/<str:booking_id>/no-show": "POST",
    "api/payments/<str:payment_id>/process": "POST",
    "api/payments/<str:payment_id>/refund": "POST",
    "api/subscriptions/<str:subscription_id>/cancel": "POST",
    "api/subscriptions/<str:subscription_id>/pause": "POST",
    "api/subscriptions/<str:subscription_id>/resume": "POST",
    "api/subscriptions/<str:subscription_id>/skip": "POST",
    "api/notifications/<str:notification_id>/read": "POST",
}
ACTION_ROUTE = re.compile(r"^api/.*<[^>]+>/[a-z-]+$")


def api_routes(patterns=None, prefix: str = "") -> list[str]:
    """Every URL route of the project under api/, as written in the URLconfs."""
    routes = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            routes += api_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/"):
            routes.append(prefix + str(pattern.pattern))
    return routes


def staff_client() -> APIClient:
    client = APIClient()
    client.force_authenticate(SuperuserFactory())
    return client


@pytest.fixture
def things():
    """An order, a booking and a payment of one customer, each as it is after its creation."""
    customer = UserFactory()
    customer_client = APIClient()
    customer_client.force_authenticate(customer)
    order = order_of(checkout(customer_client, (VariantFactory().pk, 1)))
    booking = bookings.booking_hold(
        customer_id=customer.pk,
        resource_id=ResourceFactory().pk,
        starts_at=local(3, 10),
        ends_at=local(3, 12),
    )
    gadget = GadgetFactory(customer=customer)
    created = customer_client.post(
        "/api/payments",
        {"purpose": "gadget", "purpose_id": gadget.code},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert created.status_code == 201, created.json()
    child = ChildFactory(customer=customer)
    subscription = subscriptions.subscription_create(
        customer_id=customer.pk, child_id=child.pk, plan_id=PlanFactory().pk
    )
    message = NotificationFactory(user=customer)
    return {
        "number": order.number,
        "booking_id": booking.public_id,
        "payment_id": created.json()["id"],
        "subscription_id": subscription.public_id,
        "notification_id": message.public_id,
    }


def state() -> dict:
    """Everything an action could change."""
    return {
        "orders": list(Order.objects.order_by("pk").values_list("status", "updated_at", "payment_id")),
        "bookings": list(
            Booking.objects.order_by("pk").values_list("status", "payment_status", "updated_at")
        ),
        "payments": list(
            Payment.objects.order_by("pk").values_list("status", "updated_at", "refunded_amount")
        ),
        "subscriptions": list(
            Subscription.objects.order_by("pk").values_list("status", "updated_at", "cancel_at_period_end")
        ),
        "refunds": Refund.objects.count(),
        "audits": (OrderAudit.objects.count(), BookingAudit.objects.count()),
        "events": OutboxEvent.objects.count(),
        "idempotency": IdempotencyRecord.objects.count(),
        "notifications": list(
            Notification.objects.order_by("pk").values_list("status", "read_at", "updated_at")
        ),
    }


def assert_refused(response, allowed: set[str]) -> None:
    assert response.status_code == 405, response.content
    body = response.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == "method_not_allowed"
    assert set(response["Allow"].replace(" ", "").split(",")) - {"HEAD", "OPTIONS"} == allowed


def test_every_action_route_is_listed():
    assert {route for route in api_routes() if ACTION_ROUTE.match(route)} == set(ACTIONS)


@pytest.mark.parametrize(
    ("route", "method"),
    [(route, method) for route, allowed in ACTIONS.items() for method in METHODS if method != allowed],
)
def test_an_action_answers_only_its_method_and_changes_nothing(things, route, method):
    path = "/" + re.sub(r"<str:(\w+)>", lambda m: things[m.group(1)], route)
    before = state()

    response = staff_client().generic(method, path, b'{"reason": "x"}', content_type="application/json")

    assert_refused(response, {ACTIONS[route]})
    assert state() == before


def test_delete_on_confirm_no_longer_cancels_the_booking(things):
    client = staff_client()

    response = client.delete(f"/api/bookings/{things['booking_id']}/confirm")

    assert response.status_code == 405
    assert Booking.objects.get(public_id=things["booking_id"]).status == Booking.Status.PENDING_PAYMENT


def _documented() -> dict[str, set[str]]:
    return {
        path: {method.upper() for method in operations if method.upper() in METHODS}
        for path, operations in openapi()["paths"].items()
    }


def _concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "1", path)


@pytest.mark.parametrize(
    ("path", "method"),
    [(path, m) for path, documented in _documented().items() for m in METHODS if m not in documented],
)
def test_every_other_method_of_every_endpoint_is_a_405(path, method):
    before = state()

    response = staff_client().generic(method, _concrete(path), b"{}", content_type="application/json")

    assert_refused(response, _documented()[path])
    assert state() == before


@pytest.mark.parametrize("path", sorted(_documented()))
def test_the_schema_has_exactly_the_methods_each_view_answers(path):
    view = resolve(_concrete(path)).func.view_class
    answered = {method.upper() for method in view.http_method_names if hasattr(view, method)}

    assert _documented()[path] == answered & set(METHODS)


@pytest.mark.parametrize("route", sorted(ACTIONS))
def test_the_schema_has_no_phantom_operation_on_an_action(route):
    path = "/" + re.sub(r"<str:(\w+)>", r"{\1}", route)

    assert _documented()[path] == {ACTIONS[route]}
