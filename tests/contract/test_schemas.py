"""Every event type has a schema, and publish() holds the data to it in the caller's
transaction: wrong data raises EventError and leaves nothing behind."""

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from pydantic import BaseModel

from core import events
from core.events.outbox import EventDataError, EventError
from core.events.schemas import EventData
from core.events.types import EVENT_TYPES, register_event_type
from core.models import OutboxEvent
from tests.contract.fixtures import any_event_data  # noqa: F401 (a fixture)
from tests.factories import UserFactory

APPS = ["core", "payments", "orders", "bookings", "subscriptions", "notifications", "accounts"]


def order_data(**changes) -> dict:
    """order.paid data as orders.services.order_event_data builds it (before the JSON trip)."""
    return {
        "order_id": "ORD-1",
        "number": "ORD-1",
        "customer_id": 7,
        "status": "paid",
        "total": Decimal("10.50"),
        "currency": "USD",
        "payment_id": "pay_1",
    } | changes


def published_types_in_code() -> set[str]:
    """Every literal type the apps pass to publish(), and payments' EVENT_BY_STATUS."""
    pattern = re.compile(r"""publish\(\s*["']([a-z_]+\.[a-z_]+)["']""")
    found = set()
    for app in APPS:
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py"):
            found |= set(pattern.findall(path.read_text()))
    from payments.services import EVENT_BY_STATUS

    return found | set(EVENT_BY_STATUS.values())


def test_every_registered_type_has_a_schema_and_a_version():
    assert len(EVENT_TYPES) >= 37
    for name, spec in EVENT_TYPES.items():
        assert spec.name == name
        assert issubclass(spec.schema, EventData), name
        assert spec.schema.model_config["extra"] == "forbid", name
        assert isinstance(spec.version, int) and spec.version >= 1, name
        assert spec.source in APPS, name


def test_every_type_the_code_publishes_is_registered():
    published = published_types_in_code()
    assert "booking.reminder" in published and "payment.completed" in published
    assert published - set(EVENT_TYPES) == set()


@pytest.mark.parametrize("schema", [None, dict, BaseModel])
def test_a_type_without_an_event_data_schema_is_refused(schema):
    with pytest.raises(ValueError, match="schema must be"):
        register_event_type("test.schemaless", source="core", schema=schema)
    assert "test.schemaless" not in EVENT_TYPES


def test_a_type_needs_its_schema_argument():
    with pytest.raises(TypeError):
        register_event_type("test.schemaless", source="core")  # type: ignore[call-arg]


def test_a_known_type_keeps_its_source_schema_and_version():
    spec = EVENT_TYPES["order.paid"]
    assert register_event_type("order.paid", source="orders", schema=spec.schema) == spec  # no-op

    with pytest.raises(ValueError, match="already published by orders"):
        register_event_type("order.paid", source="payments", schema=spec.schema)
    with pytest.raises(ValueError, match="already registered with OrderPaid v1"):
        register_event_type("order.paid", source="orders", schema=spec.schema, version=2)
    with pytest.raises(ValueError, match="version must be"):
        register_event_type("test.v0", source="core", schema=spec.schema, version=0)
    assert EVENT_TYPES["order.paid"] == spec


@pytest.mark.django_db(transaction=True)
def test_the_envelope_carries_the_schema_version_and_the_data_as_it_travels():
    with transaction.atomic():
        row = events.publish("order.paid", order_data(late=True))

    envelope = OutboxEvent.objects.get(pk=row.pk).envelope
    assert envelope["version"] == EVENT_TYPES["order.paid"].version == 1
    assert envelope["data"] == {**order_data(late=True), "total": "10.50"}


@pytest.mark.django_db(transaction=True)
def test_times_travel_as_iso_8601_strings():
    data = {
        "dead_letter_id": 1,
        "event_id": "7f0c9a0e-0000-4000-8000-000000000000",
        "event_type": "order.paid",
        "subscriber": "tests.audit",
        "error": "boom",
        "attempts": 3,
    }
    with transaction.atomic():
        events.publish("dead_letter.recorded", data)
        booking = events.publish(
            "booking.reminder",
            {
                "booking_id": "bkg_1",
                "resource_id": 1,
                "service_id": None,
                "customer_id": 7,
                "starts_at": dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
                "ends_at": dt.datetime(2026, 11, 22, 13, 0, tzinfo=dt.UTC),
                "timezone": "Europe/Berlin",
                "status": "confirmed",
                "payment_status": "paid",
                "payment_id": "pay_1",
                "amount_total": Decimal("40.00"),
                "amount_due": Decimal("40.00"),
                "currency": "EUR",
                "hours_before": 24,
            },
        )
    assert OutboxEvent.objects.get(pk=booking.pk).data["starts_at"] == "2026-11-22T12:00:00Z"


WRONG = [
    pytest.param(order_data(number=None), "number", id="null for a string"),
    pytest.param({k: v for k, v in order_data().items() if k != "customer_id"}, "customer_id", id="missing"),
    pytest.param(order_data(customer_id="7"), "customer_id", id="an id as a string, not the int it is"),
    pytest.param(order_data(total=10.5), "total", id="money as a float"),
    pytest.param(order_data(currency="usd"), "currency", id="a currency that is not ISO 4217"),
    pytest.param(order_data(late="yes"), "late", id="a string for a boolean"),
    pytest.param(order_data(late=None), "late", id="null for an optional key"),
    pytest.param(order_data(paid_by="cash"), "paid_by", id="an unknown key"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("data", "field"), WRONG)
def test_wrong_data_is_refused_and_rolls_the_caller_back(data, field):
    with pytest.raises(EventDataError) as refused, transaction.atomic():
        UserFactory()  # the caller's own change
        events.publish("order.created", {**order_data(), "lines": 2})  # a right one before it
        events.publish("order.paid", data)

    assert isinstance(refused.value, EventError)
    assert refused.value.event_type == "order.paid"
    assert str(refused.value).startswith("the data of order.paid does not match its schema (v1): ")
    assert [e.split(":")[0] for e in refused.value.errors] == [field]
    assert not OutboxEvent.objects.exists()
    assert not UserFactory._meta.model.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_nested_objects_are_checked_too():
    payment = {
        "payment_id": "pay_1",
        "purpose": "order",
        "customer_id": 7,
        "amount": "10.00",
        "currency": "USD",
        "kind": "full",
        "status": "created",
        "allocations": [
            {"purpose": "order", "purpose_id": "ORD-1", "amount": "10.00", "refunded_amount": "0.00",
             "kind": "full", "outcome": "open", "note": "?"}
        ],
    }  # fmt: skip
    with pytest.raises(EventDataError) as refused, transaction.atomic():
        events.publish("payment.created", payment)
    assert refused.value.errors == ["allocations.0.note: Extra inputs are not permitted"]
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("any_event_data")
def test_any_event_data_lets_a_backbone_test_publish_made_up_data():
    with transaction.atomic():
        row = events.publish("order.paid", {"order_id": "A-1", "sleep": 3})
    assert row.version == EVENT_TYPES["order.paid"].version
    assert row.source == "orders"
