"""core.events.publish: the outbox row exists if and only if the caller's transaction commits."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from core import events
from core.events.outbox import EventError
from core.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_publish_outside_a_transaction_is_refused():
    with pytest.raises(EventError, match=r"inside transaction\.atomic"):
        events.publish("order.paid", {"order_id": "A-1"})
    assert not OutboxEvent.objects.exists()


def test_unknown_type_is_refused_and_rolls_the_caller_back():
    with pytest.raises(EventError, match=r"unknown event type .order\.teleported."), transaction.atomic():
        events.publish("order.created", {"order_id": "A-1"})
        events.publish("order.teleported", {"order_id": "A-1"})
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize("bad", [{"when": object()}, {"amount": float("nan")}, ["not", "a", "dict"]])
def test_data_that_does_not_serialize_is_refused(bad):
    with pytest.raises(EventError), transaction.atomic():
        events.publish("order.created", bad)
    assert not OutboxEvent.objects.exists()


def test_envelope_has_the_documented_shape():
    with transaction.atomic():
        row = events.publish(
            "payment.completed",
            {
                "payment_id": "pay_1",
                "amount": Decimal("75.00"),
                "currency": "USD",
                "customer_id": 42,
                "paid_at": dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC),
            },
        )

    envelope = OutboxEvent.objects.get(pk=row.pk).envelope
    assert set(envelope) == {"id", "type", "version", "occurred_at", "source", "aggregate_id", "data"}
    assert uuid.UUID(envelope["id"]) == row.event_id
    assert envelope["type"] == "payment.completed"
    assert envelope["version"] == 1
    assert envelope["source"] == "payments"
    assert envelope["occurred_at"].endswith("Z")
    assert envelope["data"]["amount"] == "75.00"  # money as a string, never a float
    assert envelope["data"]["paid_at"] == "2026-11-22T12:00:00Z"
    assert row.aggregate_id == envelope["aggregate_id"] == "pay_1"


def test_rolled_back_transaction_leaves_no_event():
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish("order.created", {"order_id": "A-1"})
        raise RuntimeError("the order could not be saved")
    assert not OutboxEvent.objects.exists()
