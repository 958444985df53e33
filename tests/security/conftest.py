"""The access-control matrix's world: customer B's objects, made through the project's own
factories and services, a snapshot of every row B owns, and the API's operations as the
OpenAPI schema lists them.

B's objects are made lazily (a test pays only for the objects its operation needs) and
remembered, so that the marks of B's data (ids, e-mail) that no answer to anyone else may
contain are exactly those of what exists.
"""

import functools
import json
import uuid
from datetime import timedelta
from functools import cached_property

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Q
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bookings.models import Booking
from core.models import OutboxEvent
from notifications import services as notifications
from orders import services as orders
from orders.models import Order
from payments.models import SavedPaymentMethod
from subscriptions.models import Subscription
from tests.bookings.conftest import local
from tests.factories import ResourceFactory, StaffFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout
from tests.subscriptions.factories import ChildFactory, PlanFactory
from tests.subscriptions.helpers import paid_subscription, subscribe

METHODS = ("get", "post", "put", "patch", "delete")
# The apps whose rows a customer may own (authtoken: their API token).
OWNING_APPS = {
    "accounts",
    "authtoken",
    "core",
    "payments",
    "orders",
    "bookings",
    "subscriptions",
    "notifications",
}
# How far a row may be from its owner through foreign keys (a refund's share: share -> refund
# -> payment -> customer).
OWNER_DEPTH = 3


@functools.cache
def openapi() -> dict:
    """The schema /api/schema/ serves, as JSON data (as tests/core/test_schema_accuracy.py)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


@functools.cache
def schema_operations() -> tuple[str, ...]:
    """Every operation of the schema as "METHOD /path", sorted: the matrix's rows."""
    return tuple(
        sorted(
            f"{method.upper()} {path}"
            for path, operations in openapi()["paths"].items()
            for method in operations
            if method in METHODS
        )
    )


def operation(key: str) -> dict:
    method, path = key.split(" ", 1)
    return openapi()["paths"][path][method.lower()]


def schema_example(key: str) -> dict:
    """The first JSON request example the schema gives for the operation ({} if none)."""
    body = operation(key).get("requestBody", {}).get("content", {}).get("application/json", {})
    examples = body.get("examples") or {}
    first = next(iter(examples.values()), {})
    return dict(first.get("value") or {})


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def call(user, method: str, url: str, body: dict | None = None, params: dict | None = None, key: str = ""):
    """One request as `user` (None: anonymous); unsafe ones carry an Idempotency-Key (fresh if not given)."""
    client = client_for(user)
    if method == "GET":
        return client.get(url, params or {})
    return client.generic(
        method,
        url,
        json.dumps(body or {}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()),
    )


# --- what a customer owns ---------------------------------------------------------------------
def _owner_paths(model, user_model, depth: int) -> list[str]:
    """Lookups from `model` to a user through forward foreign keys, up to `depth` hops."""
    if model is user_model:
        return ["pk"]
    if depth == 0:
        return []
    paths = []
    for field in model._meta.concrete_fields:
        target = field.related_model if field.is_relation else None
        if target is None or target._meta.app_label not in OWNING_APPS:
            continue
        paths += [
            f"{field.name}__{rest}" if rest != "pk" else field.name
            for rest in _owner_paths(target, user_model, depth - 1)
        ]
    return paths


@functools.cache
def owned_models() -> tuple[tuple[type, Q], ...]:
    """Every model of the project's apps that can belong to a user, with the lookups to them."""
    user_model = get_user_model()
    found = []
    for model in apps.get_models():
        if model._meta.app_label in OWNING_APPS:
            paths = _owner_paths(model, user_model, OWNER_DEPTH)
            if paths:
                found.append((model, paths))
    return tuple(found)


def snapshot(user) -> dict[str, list[dict]]:
    """Every row `user` owns (directly or through its parents), every column: what nobody
    else's request may change (status, amounts, updated_at...)."""
    rows = {}
    for model, paths in owned_models():
        owned = Q()
        for path in paths:
            owned |= Q(**{path: user.pk})
        rows[model._meta.label] = list(model.objects.filter(owned).order_by("pk").values())
    return rows


def outbox_seq() -> int:
    return OutboxEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


# --- customer B's world ---------------------------------------------------------------------
class World:
    """Customers A (the intruder) and B (the victim), staff, and B's objects, made on first use."""

    def __init__(self):
        self.a = UserFactory()
        self.b = UserFactory()
        self.staff = StaffFactory()
        # "METHOD /path" -> (the Idempotency-Key, the body) of B's requests that made B's objects
        self.keys: dict[str, tuple[str, dict]] = {}

    @cached_property
    def variant(self):
        return VariantFactory(stock_on_hand=50)

    @cached_property
    def product(self):
        return self.variant.product

    # A webhook's gateway: Stripe, which signs its webhooks (no secret configured in tests).
    webhook_gateway = "stripe"

    @cached_property
    def order(self) -> Order:
        """B's order, pending payment, with its sandbox payment (checkout through the API)."""
        key = self.keys.setdefault("POST /api/checkout", (f"checkout-{self.b.pk}", {}))[0]
        response = checkout(client_for(self.b), (self.variant.pk, 1), key=key)
        assert response.status_code == 201, response.json()
        return Order.objects.select_related("payment").get(number=response.json()["number"])

    @cached_property
    def payment(self):
        return self.order.payment

    @cached_property
    def cart_item(self):
        """An item in B's cart (after B's order, whose checkout empties the cart)."""
        assert self.order
        return orders.cart_item_add(customer_id=self.b.pk, variant_id=self.variant.pk, quantity=2)

    @cached_property
    def booking(self):
        """B's hold of a hall in three days, its deposit pending (through the API)."""
        hall, start = ResourceFactory(), local(3, 10)
        body = {
            "hall_id": hall.pk,
            "start": start.isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        }
        key, body = self.keys.setdefault("POST /api/bookings", (f"booking-{self.b.pk}", body))
        response = call(self.b, "POST", "/api/bookings", body, key=key)
        assert response.status_code == 201, response.json()
        return Booking.objects.get(public_id=response.json()["id"])

    @cached_property
    def child(self):
        return ChildFactory(customer=self.b)

    @cached_property
    def subscription(self) -> Subscription:
        """B's active subscription: first invoice paid in the sandbox, card kept, box building."""
        return paid_subscription(client_for(self.b), self.child, PlanFactory())

    @cached_property
    def invoice(self):
        return self.subscription.invoices.get()

    @cached_property
    def toybox(self):
        return self.subscription.toyboxes.get()

    @cached_property
    def method(self) -> SavedPaymentMethod:
        assert self.subscription
        return SavedPaymentMethod.objects.get(customer=self.b)

    @cached_property
    def pending_subscription(self) -> Subscription:
        """A second child of B's, subscribed, its payment opened and not paid: payable by B only."""
        child, plan, key = ChildFactory(customer=self.b), PlanFactory(), f"subscribe-{self.b.pk}"
        self.keys["POST /api/subscriptions"] = (key, {"child_id": child.pk, "plan_id": plan.pk})
        response = subscribe(client_for(self.b), child, plan, key=key)
        assert response.status_code == 201, response.json()
        subscription = Subscription.objects.get(public_id=response.json()["id"])
        body = {"subscription_ids": [subscription.public_id]}
        response = call(self.b, "POST", "/api/payments/batch", body, key=f"batch-{self.b.pk}")
        assert response.status_code == 201, response.json()  # B opened its payment, and left
        self.keys["POST /api/payments/batch"] = (f"batch-{self.b.pk}", body)
        return subscription

    @cached_property
    def token(self) -> Token:
        return Token.objects.get_or_create(user=self.b)[0]

    @cached_property
    def preference(self):
        """B's saved preferences (not the unsaved defaults), so that a change would show."""
        return notifications.preference_update(self.b, timezone="Europe/Berlin")

    @cached_property
    def notification(self):
        return NotificationFactory(user=self.b, subject="Your parcel is on its way")

    # A path parameter of the schema -> B's object it names, and the value in the URL.
    PATH_PARAMETERS = {
        "booking_id": ("booking", "public_id"),
        "item_id": ("cart_item", "pk"),
        "child_id": ("child", "pk"),
        "notification_id": ("notification", "public_id"),
        "number": ("order", "number"),
        "method_id": ("method", "public_id"),
        "payment_id": ("payment", "public_id"),
        "subscription_id": ("subscription", "public_id"),
        "toybox_id": ("toybox", "public_id"),
        "slug": ("product", "slug"),  # public: the catalogue's
        "gateway": ("webhook_gateway", None),
    }
    OWN = ("booking", "child", "notification", "order", "method", "payment", "subscription", "toybox")

    def build_all(self) -> None:
        """Make every object of B's, so that an answer that leaks any of them is seen."""
        for name in (*self.OWN, "cart_item", "invoice", "pending_subscription", "token", "preference"):
            getattr(self, name)

    def url(self, path: str) -> str:
        """The operation's path with B's objects in it."""
        for name, (thing, attribute) in self.PATH_PARAMETERS.items():
            if "{" + name + "}" in path:
                value = getattr(self, thing)
                path = path.replace("{" + name + "}", str(getattr(value, attribute) if attribute else value))
        return path

    def marks(self) -> set[str]:
        """Strings of B's data that no answer to A or to an anonymous caller may contain."""
        found = {self.b.email, self.b.phone}
        for thing, attribute in self.PATH_PARAMETERS.values():
            if thing in self.OWN and thing in self.__dict__ and attribute != "pk":
                found.add(str(getattr(self.__dict__[thing], attribute)))
        if "subscription" in self.__dict__:
            found |= {self.invoice.number, self.toybox.public_id, self.child.name}
        if "notification" in self.__dict__:
            found.add(self.notification.subject)
        return {mark for mark in found if mark}


@pytest.fixture
def world(db, celery_app_without_worker) -> World:
    """A, B, staff; tasks the requests send (a payment's verification) are purged afterwards."""
    return World()
