"""The event backbone end to end: real RabbitMQ, PostgreSQL and Celery workers."""

import itertools
import json
import os
import signal
import threading
from io import StringIO
from urllib.parse import unquote, urlsplit

import pika
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from config.celery import app, dead_letter_queue
from core import events
from core.events.registry import SUBSCRIBERS
from core.events.relay import relay_run
from core.events.tasks import sweep
from core.logging import request_id_var
from core.models import DeadLetter, OutboxEvent, ProcessedEvent
from tests.conftest import wait_for
from tests.factories import SuperuserFactory
from tests.testapp.models import Effect

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def pika_parameters() -> pika.ConnectionParameters:
    """The test broker for pika (kombu writes the default vhost as `//`, pika as `/%2F`)."""
    url = urlsplit(settings.CELERY_BROKER_URL)
    return pika.ConnectionParameters(
        host=url.hostname,
        port=url.port or 5672,
        virtual_host=unquote(url.path[1:]) or "/",
        credentials=pika.PlainCredentials(url.username or "guest", url.password or "guest"),
    )


class ExternalConsumer:
    """A consumer written against pika only, as a service in another codebase would be."""

    def __init__(self, binding: str):
        self.connection = pika.BlockingConnection(pika_parameters())
        self.channel = self.connection.channel()
        self.channel.exchange_declare(settings.EVENTS_EXCHANGE, exchange_type="topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, settings.EVENTS_EXCHANGE, routing_key=binding)

    def take(self, count: int, timeout: float = 20.0) -> list[tuple[pika.BasicProperties, dict]]:
        received = []

        def more():
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method:
                received.append((properties, json.loads(body)))
            return len(received) >= count

        wait_for(more, timeout=timeout, interval=0.01, what=f"{count} events on the external queue")
        return received

    def leftover(self) -> int:
        return self.channel.queue_declare(self.queue, passive=True).method.message_count

    def close(self) -> None:
        self.connection.close()


def test_external_pika_consumer_gets_exactly_the_committed_events(celery_worker):
    consumer = ExternalConsumer("order.#")
    try:
        with transaction.atomic():
            created = events.publish("order.created", {"order_id": "A-1", "total": "10.00"})
            paid = events.publish("order.paid", {"order_id": "A-1"})
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish("order.cancelled", {"order_id": "A-2"})
            raise RuntimeError("rolled back")
        with transaction.atomic():
            events.publish("booking.created", {"booking_id": "B-1"})  # not bound: not received

        received = consumer.take(2)
        relay_run(force=True)  # anything still waiting would be published now
        assert consumer.leftover() == 0
    finally:
        consumer.close()

    (p1, e1), (p2, e2) = received
    assert [e1["id"], e2["id"]] == [str(created.event_id), str(paid.event_id)]
    assert e1 == {
        "id": str(created.event_id),
        "type": "order.created",
        "version": 1,
        "occurred_at": e1["occurred_at"],
        "source": "orders",
        "aggregate_id": "A-1",
        "data": {"order_id": "A-1", "total": "10.00"},
    }
    assert p1.message_id == e1["id"]
    assert p1.delivery_mode == 2  # persistent
    assert p1.content_type == "application/json"
    assert p2.headers["event_type"] == "order.paid"


def test_subscribers_run_once_per_matching_event(celery_worker):
    with transaction.atomic():
        paid = events.publish("order.paid", {"order_id": "A-7"})

    wait_for(lambda: Effect.objects.filter(event_id=paid.event_id).count() == 2, what="both subscribers")
    assert sorted(Effect.objects.values_list("subscriber", flat=True)) == ["order_effect", "order_paid_audit"]
    # The test app's two subscribers (the project's own, e.g. notifications, take order.paid too).
    assert ProcessedEvent.objects.filter(event_id=paid.event_id, subscriber__startswith="tests.").count() == 2
    assert OutboxEvent.objects.get(pk=paid.pk).published_at is not None


def test_the_publishing_request_id_reaches_the_subscriber(celery_worker):
    token = request_id_var.set("req-checkout-7")
    try:
        with transaction.atomic():
            created = events.publish("order.created", {"order_id": "A-5"})
    finally:
        request_id_var.reset(token)

    effect = wait_for(lambda: Effect.objects.filter(event_id=created.event_id).first(), what="the effect")
    assert effect.request_id == "req-checkout-7"


def test_a_redelivered_event_has_no_second_effect(celery_worker, finished_tasks):
    with transaction.atomic():
        created = events.publish("order.created", {"order_id": "A-8"})
    wait_for(lambda: Effect.objects.filter(event_id=created.event_id).exists(), what="the first effect")

    # The broker hands the same message over again (as after a lost connection).
    sub = SUBSCRIBERS["tests.order_effect"]
    again = sub.task.apply_async(args=[OutboxEvent.objects.get(pk=created.pk).envelope], queue=sub.queue)

    assert wait_for(lambda: finished_tasks.get(again.id), what="the second delivery") == "already processed"
    assert Effect.objects.filter(event_id=created.event_id).count() == 1


def test_events_published_while_the_broker_is_unreachable_all_arrive_once(celery_worker):
    consumer = ExternalConsumer("order.#")
    unreachable = "amqp://guest:guest@127.0.0.1:1//"
    try:
        with override_settings(EVENTS_BROKER_URL=unreachable, EVENTS_RELAY_MAX_BACKOFF=1.0):
            published = []
            for i in range(100):
                with transaction.atomic():  # ten events per commit, a thousand in all
                    for j in range(10):
                        kind = "order.paid" if j % 5 == 0 else "order.created"
                        published.append(events.publish(kind, {"order_id": f"O-{j}", "n": i * 10 + j}))
            # The kicks reached a worker, whose relay could not reach the broker: nothing went out.
            wait_for(
                lambda: OutboxEvent.objects.filter(attempts__gt=0).exists(), what="a failed relay attempt"
            )
            result = relay_run(force=True)
            assert result.failed and result.published == 0
            assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 1000
            assert "cannot reach the broker" in OutboxEvent.objects.order_by("seq").first().last_error
            assert not Effect.objects.exists()

        # The broker is reachable again: the beat sweep delivers everything.
        def delivered():
            sweep.delay()
            return not OutboxEvent.objects.filter(published_at__isnull=True).exists()

        wait_for(delivered, timeout=60, interval=1.0, what="the outbox to drain")
        received = consumer.take(1000, timeout=30)
    finally:
        consumer.close()

    expected_effects = 1000 + sum(1 for e in published if e.type == "order.paid")
    wait_for(lambda: Effect.objects.count() == expected_effects, timeout=60, what="every subscriber effect")
    per_event = Effect.objects.values_list("event_id", "subscriber")
    assert len(set(per_event)) == len(per_event) == expected_effects  # each effect exactly once
    # In order on the exchange: by seq overall, so by seq within each aggregate.
    assert [env["data"]["n"] for _, env in received] == list(range(1000))


def test_sigkill_of_the_worker_mid_subscriber_leaves_one_effect(worker_processes, redis_client):
    first = worker_processes("bookings,events,default")
    with transaction.atomic():
        event = events.publish("booking.created", {"booking_id": "B-9", "sleep": 3})

    wait_for(lambda: redis_client.llen(f"started:{event.event_id}") == 1, what="the subscriber to start")
    first.kill()  # mid-transaction: its effect row was written but never committed
    assert not Effect.objects.filter(event_id=event.event_id).exists()

    worker_processes("bookings,events,default")  # RabbitMQ redelivers the unacknowledged message

    wait_for(
        lambda: Effect.objects.filter(event_id=event.event_id).exists(),
        timeout=60,
        what="the redelivered run",
    )
    assert redis_client.llen(f"started:{event.event_id}") == 2  # it ran twice...
    assert Effect.objects.filter(event_id=event.event_id).count() == 1  # ...with one effect
    assert ProcessedEvent.objects.filter(event_id=event.event_id).count() == 1


def test_sigkill_of_the_pool_child_after_commit_before_ack_leaves_one_effect(
    task_per_subscriber, worker_processes, redis_client
):
    worker = worker_processes("bookings,events,default", env=task_per_subscriber)
    with transaction.atomic():
        event = events.publish("booking.created", {"booking_id": "B-10", "sleep_after_commit": 5})

    # The effect committed; the child still holds the message, unacknowledged.
    child_pid = int(wait_for(lambda: redis_client.lpop(f"committed:{event.event_id}"), what="the commit"))
    os.kill(child_pid, signal.SIGKILL)

    # The worker sees its child lost, rejects the message back to the queue, and a new child
    # gets it again: the processed-event row stops a second effect.
    def redelivered_and_done():
        stats = app.control.inspect(destination=[worker.name], timeout=1).stats() or {}
        total = stats.get(worker.name, {}).get("total", {}).get("events.tests.slow_booking", 0)
        active = (app.control.inspect(destination=[worker.name], timeout=1).active() or {}).get(worker.name)
        return total >= 2 and active == []

    wait_for(redelivered_and_done, timeout=60, interval=0.5, what="the redelivered run to finish")
    assert Effect.objects.filter(event_id=event.event_id).count() == 1
    assert redis_client.llen(f"started:{event.event_id}") == 1  # the second run did not get that far
    assert ProcessedEvent.objects.filter(event_id=event.event_id).count() == 1


def test_a_subscriber_bug_is_dead_lettered_at_once_and_others_proceed(celery_worker):
    with transaction.atomic():
        event = events.publish("order.fulfilled", {"order_id": "A-11"})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.broken").first(),
        what="the dead letter",
    )
    assert letter.attempts == 1  # not a transient error: no retries
    assert letter.error.startswith("ValueError: unexpected shape")
    wait_for(
        lambda: Effect.objects.filter(event_id=event.event_id, subscriber="order_effect").exists(),
        what="the other subscriber's effect",
    )


def test_poison_subscriber_is_dead_lettered_then_replayed(task_per_subscriber, celery_worker, redis_client):
    dlq = dead_letter_queue("default")
    with app.connection_for_read() as conn:
        dlq(conn.default_channel).purge()

    with transaction.atomic():
        event = events.publish("order.cancelled", {"order_id": "A-9"})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id).first(), timeout=30, what="the dead letter"
    )
    attempts = [float(t) for t in redis_client.lrange(f"poison:{event.event_id}", 0, -1)]
    assert len(attempts) == 4 == letter.attempts  # the first try and 3 retries
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] < gaps[1] < gaps[2]  # 1 s, 2 s, 4 s
    assert letter.subscriber == "tests.poison"
    assert "downstream still unavailable" in letter.error
    assert "TransientError" in letter.traceback
    assert letter.resolved_at is None
    # The other subscriber of the same event was not held back.
    assert Effect.objects.filter(event_id=event.event_id, subscriber="order_effect").count() == 1
    # ...and the message itself is on the queue's dead-letter queue.
    with app.connection_for_read() as conn:
        message = wait_for(lambda: dlq(conn.default_channel).get(no_ack=True), what="the DLQ message")
    assert message.headers["x-death"][0]["reason"] == "rejected"

    redis_client.set("poison:fixed", 1)  # the fix is deployed
    out = StringIO()
    call_command("events", "replay", "--id", str(letter.pk), stdout=out)
    assert "1 dead letters replayed" in out.getvalue()

    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        what="the replay to resolve the dead letter",
    )
    assert Effect.objects.filter(event_id=event.event_id, subscriber="poison").count() == 1


def test_events_tail_prints_live_events(celery_worker):
    out, err = StringIO(), StringIO()
    tail = threading.Thread(
        target=call_command,
        args=("events", "tail", "payment.#", "--limit", "1", "--timeout", "20"),
        kwargs={"stdout": out, "stderr": err},
    )
    tail.start()
    wait_for(lambda: "listening" in err.getvalue(), what="the tail to bind its queue")
    with transaction.atomic():
        event = events.publish("payment.completed", {"payment_id": "pay_9", "amount": "5.00"})
    tail.join(timeout=30)

    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["id"] == str(event.event_id)


def test_admin_replay_resolves_the_dead_letter_through_the_worker(celery_worker, client):
    with transaction.atomic():
        event = events.publish("order.paid", {"order_id": "A-12"})
    wait_for(lambda: Effect.objects.filter(event_id=event.event_id).count() == 2, what="the first delivery")
    # As if order_paid_audit had failed for good: its effect and marker never committed.
    Effect.objects.filter(event_id=event.event_id, subscriber="order_paid_audit").delete()
    ProcessedEvent.objects.filter(event_id=event.event_id, subscriber="tests.order_paid_audit").delete()
    now = timezone.now()
    letter = DeadLetter.objects.create(
        event_id=event.event_id,
        event_type="order.paid",
        subscriber="tests.order_paid_audit",
        envelope=OutboxEvent.objects.get(pk=event.pk).envelope,
        error="TransientError: boom",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
    )
    client.force_login(SuperuserFactory())

    response = client.post(
        "/admin/core/deadletter/", {"action": "replay", "_selected_action": [letter.pk]}, follow=True
    )

    assert "1 dead letters sent to their subscribers again" in response.content.decode()
    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        what="the replay to resolve the dead letter",
    )
    assert Effect.objects.filter(event_id=event.event_id, subscriber="order_paid_audit").count() == 1
