"""Subscribers used by the event backbone tests; switches in Redis steer how they behave."""

import os
import time

import redis
from django.conf import settings
from django.db import connection, transaction

from core import events
from core.errors import TransientError
from core.logging import request_id_var
from tests.testapp.models import Effect


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _record(event: events.Event, subscriber: str) -> None:
    Effect.objects.create(
        event_id=event.id,
        event_type=event.type,
        subscriber=subscriber,
        aggregate_id=str(event.data.get("order_id", "")),
        request_id=request_id_var.get() or "",
    )


@events.subscriber("order.*", queue="orders", name="tests.order_effect")
def order_effect(event: events.Event) -> None:
    _record(event, "order_effect")


@events.subscriber("order.paid", queue="default", name="tests.order_paid_audit")
def order_paid_audit(event: events.Event) -> None:
    _record(event, "order_paid_audit")


@events.subscriber("booking.#", queue="bookings", name="tests.slow_booking")
def slow_booking(event: events.Event) -> None:
    """Writes its effect, then dawdles, before or after its commit, so a test can kill it there."""
    _record(event, "slow_booking")
    _redis().rpush(f"started:{event.id}", time.time())
    time.sleep(float(event.data.get("sleep", 0)))

    def committed_then_dawdle():
        _redis().rpush(f"committed:{event.id}", os.getpid())
        time.sleep(float(event.data.get("sleep_after_commit", 0)))

    transaction.on_commit(committed_then_dawdle)


@events.subscriber("order.fulfilled", queue="default", name="tests.broken", max_retries=3)
def broken(event: events.Event) -> None:
    """A bug, not a passing fault: dead-lettered at once, without retries."""
    raise ValueError("unexpected shape of the fulfilment data")


@events.subscriber("order.cancelled", queue="default", name="tests.poison", retry_jitter=False, max_retries=3)
def poison(event: events.Event) -> None:
    """Fails with a transient error until the Redis switch `poison:fixed` is set."""
    _redis().rpush(f"poison:{event.id}", time.time())
    if not _redis().get("poison:fixed"):
        raise TransientError("downstream still unavailable")
    _record(event, "poison")


# Narrowed by the event's data (`when=`): the relay enqueues them only for the events they take.
@events.subscriber("product.updated", queue="default", name="tests.restock_audit", when={"reason": "stock"})
def restock_audit(event: events.Event) -> None:
    _record(event, "restock_audit")


@events.subscriber(
    "product.updated", queue="default", name="tests.catalogue_change", when={"reason": ("edited", "category")}
)
def catalogue_change(event: events.Event) -> None:
    _record(event, "catalogue_change")


@events.subscriber("order.refunded", queue="orders", name="tests.refund_ledger", batch=10)
def refund_ledger(event: events.Event) -> None:
    """Declares batches of ten: notes the database transaction each event's effect ran in."""
    if event.data.get("bad"):
        raise ValueError("a refund without an amount")
    _record(event, "refund_ledger")
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        _redis().set(f"txid:{event.id}", cursor.fetchone()[0])
