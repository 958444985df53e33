"""Subscribers used by the event backbone tests; switches in Redis steer how they behave."""

import time

import redis
from django.conf import settings

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
    """Writes its effect, then dawdles (so the test can kill the worker mid-transaction)."""
    _record(event, "slow_booking")
    _redis().rpush(f"started:{event.id}", time.time())
    time.sleep(float(event.data.get("sleep", 0)))


@events.subscriber("order.cancelled", queue="default", name="tests.poison", retry_jitter=False, max_retries=3)
def poison(event: events.Event) -> None:
    """Fails with a transient error until the Redis switch `poison:fixed` is set."""
    _redis().rpush(f"poison:{event.id}", time.time())
    if not _redis().get("poison:fixed"):
        raise TransientError("downstream still unavailable")
    _record(event, "poison")
