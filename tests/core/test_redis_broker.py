"""Celery over Redis, for those who run Redis only (CELERY_BROKER_URL=redis://...): a real worker
process on the suite's Redis takes the relay's kick, the relay sends a task per subscriber (the
events consumer needs RabbitMQ), the subscribers run once each, and one that fails for good is
recorded as a dead letter (Redis has no dead-letter queue)."""

import pytest
from django.db import transaction

from config.celery import app
from config.settings.base import celery_broker, consumer_default
from core import events
from core.events.tasks import relay
from core.models import DeadLetter, OutboxEvent, ProcessedEvent
from tests.conftest import wait_for
from tests.testapp.models import Effect

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("any_event_data", "celery_app_without_worker"),
]


def test_a_redis_url_gets_a_visibility_timeout_beyond_the_longest_retry_and_no_consumer():
    url, options = celery_broker("redis://127.0.0.1:6379/3")
    assert url == "redis://127.0.0.1:6379/3"
    assert options["visibility_timeout"] >= 600  # the longest retry countdown
    assert "confirm_publish" not in options
    assert not consumer_default(url, "")  # the events consumer needs RabbitMQ


def test_events_flow_through_tasks_on_a_redis_broker(settings, worker_processes):
    """Everything runs in the worker process, whose broker is Redis; this process only commits
    and sends the first kick. (Its own CELERY_BROKER_URL stays: Celery reads it live, and its
    connection pool would keep Redis connections for the next tests.)"""
    broker = settings.REDIS_URL
    worker_processes("orders,default,events", concurrency=2, broker=broker)

    with transaction.atomic():
        paid = events.publish("order.paid", {"order_id": "R-1"})
        fulfilled = events.publish("order.fulfilled", {"order_id": "R-1"})
    with app.connection_for_write(broker) as conn:  # the kick, through Redis
        relay.apply_async(connection=conn)

    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), what="the relay")
    wait_for(
        lambda: (
            Effect.objects.filter(event_id=paid.event_id).count() == 2
            and Effect.objects.filter(event_id=fulfilled.event_id).exists()
        ),
        timeout=30,
        what="the subscribers' effects",
    )
    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=fulfilled.event_id, subscriber="tests.broken").first(),
        what="the dead letter",
    )
    assert letter.attempts == 1 and letter.error.startswith("ValueError")
    assert sorted(Effect.objects.filter(event_id=paid.event_id).values_list("subscriber", flat=True)) == [
        "order_effect",
        "order_paid_audit",
    ]
    assert ProcessedEvent.objects.filter(event_id=paid.event_id, subscriber__startswith="tests.").count() == 2
