"""Subscribers narrowed by `when=`: they run only for events whose data match.

The events consumer applies `when` before it hands an event to the pool; with a Celery task
per subscriber (`task_per_subscriber`, the fallback) the relay enqueues no task for the others.

tests.restock_audit takes product.updated with reason "stock"; tests.catalogue_change takes
reason "edited" or "category" (tests/testapp/subscribers.py). Both are on the `default` queue.
"""

import json
import uuid

import pytest
from django.db import transaction

from config.celery import app
from core import events
from core.events.registry import SUBSCRIBERS
from core.events.relay import relay_run
from core.models import OutboxEvent, ProcessedEvent
from core.queues import work_queue
from tests.conftest import wait_for
from tests.events.test_backbone import ExternalConsumer
from tests.testapp.models import Effect

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def product_updated(*reasons: str) -> dict[str, uuid.UUID]:
    """Commit one product.updated per reason; their event ids by reason."""
    published = {}
    with transaction.atomic():
        for n, reason in enumerate(reasons):
            event = events.publish(
                "product.updated", {"product_id": n, "slug": f"p-{n}", "category_id": 1, "reason": reason}
            )
            published[reason] = event.event_id
    return published


def subscriber_messages_on(queue_name: str, event_ids) -> list[tuple[str, str]]:
    """(task name, event id) of every message now on `queue_name` for these events; takes them off."""
    wanted = {str(event_id) for event_id in event_ids}
    found = []
    with app.connection_for_read() as conn:
        queue = work_queue(queue_name)(conn.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            envelope = json.loads(message.body)[0][0]
            if envelope["id"] in wanted:
                found.append((message.headers["task"], envelope["id"]))
    return sorted(found)


def task_of(subscriber: str) -> str:
    return SUBSCRIBERS[subscriber].task.name


def test_a_subscriber_with_when_gets_a_message_only_for_matching_events(
    task_per_subscriber, celery_app_without_worker
):
    consumer = ExternalConsumer("product.updated")
    try:
        ids = product_updated("stock", "price")

        result = relay_run(force=True)  # no worker: whatever the relay sent stays on the queues

        assert (result.published, result.failed) == (2, False)
        # The events exchange still gets every envelope, whatever the subscribers take.
        received = consumer.take(2)
    finally:
        consumer.close()
    assert [envelope["id"] for _, envelope in received] == [str(ids["stock"]), str(ids["price"])]
    # Confirmed by the broker, so on the queue if sent at all: one message, for the matching event.
    assert subscriber_messages_on("default", ids.values()) == [
        (task_of("tests.restock_audit"), str(ids["stock"]))
    ]


def test_when_with_several_values_takes_any_of_them(task_per_subscriber, celery_app_without_worker):
    ids = product_updated("edited", "category", "stock", "price")

    relay_run(force=True)

    assert subscriber_messages_on("default", ids.values()) == sorted(
        [
            (task_of("tests.catalogue_change"), str(ids["edited"])),
            (task_of("tests.catalogue_change"), str(ids["category"])),
            (task_of("tests.restock_audit"), str(ids["stock"])),
        ]
    )


def test_only_the_subscribers_an_event_is_for_run_and_leave_a_marker(celery_worker, deliveries):
    ids = product_updated("stock", "edited", "price")
    restock, change = SUBSCRIBERS["tests.restock_audit"], SUBSCRIBERS["tests.catalogue_change"]
    # Behind them on the same queue, in a later commit: once it ran, the three were looked at.
    last = product_updated("category")["category"]

    wait_for(
        lambda: ProcessedEvent.objects.filter(event_id=last, subscriber=change.name).exists(),
        what="the last event's run",
    )
    # Their own markers: other subscribers of product.updated (the catalogue cache's) leave
    # theirs too, and the pool may run the earlier events' jobs after the last one's.
    wait_for(
        lambda: (
            ProcessedEvent.objects.filter(
                event_id__in=ids.values(), subscriber__in=[restock.name, change.name]
            ).count()
            >= 2
        ),
        what="the two subscribers' runs",
    )

    assert not OutboxEvent.objects.filter(event_id__in=ids.values(), published_at__isnull=True).exists()
    effects = Effect.objects.filter(event_id__in=ids.values()).values_list("subscriber", "event_id")
    assert set(effects) == {("restock_audit", ids["stock"]), ("catalogue_change", ids["edited"])}
    markers = ProcessedEvent.objects.filter(
        event_id__in=ids.values(), subscriber__in=[restock.name, change.name]
    )
    assert set(markers.values_list("subscriber", "event_id")) == {
        (restock.name, ids["stock"]),
        (change.name, ids["edited"]),
    }

    # Nothing of theirs reached the pool for the other events: `when` came first.
    def ran():  # recorded once the job's run returned, a moment after its commit
        mine = (restock.name, change.name)
        return {(name, event_id) for event_id, name, _, _ in deliveries if name in mine}

    expected = {
        (restock.name, str(ids["stock"])),
        (change.name, str(ids["edited"])),
        (change.name, str(last)),
    }
    wait_for(lambda: ran() >= expected, what="the runs' records")
    assert ran() == expected


def test_a_delivery_sent_before_the_condition_existed_does_not_run(
    task_per_subscriber, celery_worker, finished_tasks
):
    """A delivery the relay published before `when` was added (during a deploy) is acknowledged unrun."""
    ids = product_updated("price")
    wait_for(
        lambda: not OutboxEvent.objects.filter(event_id=ids["price"], published_at__isnull=True).exists(),
        what="the relay",
    )
    sub = SUBSCRIBERS["tests.restock_audit"]
    envelope = OutboxEvent.objects.get(event_id=ids["price"]).envelope

    stale = sub.task.apply_async(args=[envelope], task_id=sub.task_id(envelope["id"]), queue=sub.queue)

    outcome = wait_for(lambda: finished_tasks.get(stale.id), what="the stale delivery")
    assert outcome == "not for this subscriber"
    assert not ProcessedEvent.objects.filter(event_id=ids["price"], subscriber=sub.name).exists()
    assert not Effect.objects.filter(event_id=ids["price"]).exists()
