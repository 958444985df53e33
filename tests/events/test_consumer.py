"""Events consumed inside the worker (EVENTS_CONSUMER, core/events/consumer.py), end to end.

One message per event on `<group>.events` for each group of subscribers it matches, no Celery
task per subscriber; retries through `<group>.events.retry.<n>`, dead letters on
`<group>.events.dlq` beside their DeadLetter row. Each test turns the mode on before its
worker starts; the queues are purged before and deleted after, so that the events the other
tests publish do not pile up on queues nobody consumes.
"""

import itertools
import json
import os
import signal

import pika
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, transaction

from config.celery import app
from core import events
from core.events import consumer
from core.events.maintenance import dead_letter_replay
from core.events.registry import subscribers_for
from core.events.relay import relay_run
from core.events.sinks import events_exchange
from core.logging import request_id_var
from core.models import DeadLetter, OutboxEvent, ProcessedEvent
from tests.conftest import purge_queues, queue_messages, running_worker, wait_for
from tests.events.test_backbone import pika_parameters
from tests.events.test_when import product_updated
from tests.testapp.models import Effect

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CONSUMER_ENV = {"TEST_EVENTS_CONSUMER": "1"}  # for the worker processes a test starts


@pytest.fixture
def consuming(settings):
    """The mode on in this process (relay, replay, the in-process worker) whatever
    TEST_EVENTS_CONSUMER says; its queues empty before and after."""
    settings.EVENTS_CONSUMER = True
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def consuming_worker(consuming, django_db_setup, django_db_blocker):
    """The in-process worker (threads pool) of `celery_worker`, consuming events itself."""
    with django_db_blocker.unblock(), running_worker() as worker:
        yield worker


class Peek:
    """Messages on a queue, looked at and left there (unacknowledged, requeued on close)."""

    def __init__(self):
        self.connection = pika.BlockingConnection(pika_parameters())
        self.channel = self.connection.channel()

    def count(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def take(self, queue: str) -> list[tuple[pika.BasicProperties, dict]]:
        found = []
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=False)
            if method is None:
                return found
            found.append((properties, json.loads(body)))

    def close(self) -> None:
        self.connection.close()  # what was taken goes back to its queue


def test_an_event_is_one_message_per_group_and_no_task_per_subscriber(consuming):
    data = {"order_id": "C-1"}
    with transaction.atomic():
        paid = events.publish("order.paid", data)
    groups = {s.queue for s in subscribers_for("order.paid") if s.accepts(data)}
    assert {"default", "orders"} <= groups  # tests.order_paid_audit, tests.order_effect

    result = relay_run(force=True)  # no worker yet: what the relay sent stays on the queues

    assert (result.published, result.failed) == (1, False)
    peek = Peek()
    try:
        for group in groups:
            assert peek.count(group) == 0, f"a Celery task on {group}"
            messages = peek.take(f"{group}.events")
            assert [envelope["id"] for _, envelope in messages] == [str(paid.event_id)], group
            assert messages[0][0].headers["event_type"] == "order.paid"
    finally:
        peek.close()

    with running_worker():
        wait_for(lambda: Effect.objects.filter(event_id=paid.event_id).count() == 2, what="both subscribers")
    assert sorted(Effect.objects.values_list("subscriber", flat=True)) == ["order_effect", "order_paid_audit"]
    assert set(
        ProcessedEvent.objects.filter(event_id=paid.event_id, subscriber__startswith="tests.").values_list(
            "subscriber", flat=True
        )
    ) == {"tests.order_effect", "tests.order_paid_audit"}


def test_the_same_envelope_twice_has_one_effect(consuming_worker, deliveries):
    with transaction.atomic():
        created = events.publish("order.created", {"order_id": "C-2"})
    wait_for(lambda: Effect.objects.filter(event_id=created.event_id).exists(), what="the first effect")
    envelope = OutboxEvent.objects.get(pk=created.pk).envelope

    # The bus hands the same envelope over again (as a publisher that retried after a lost confirm).
    with app.producer_or_acquire() as producer:
        producer.publish(
            envelope, exchange=events_exchange(), routing_key=envelope["type"], serializer="json", retry=True
        )

    def runs():
        return [d for d in deliveries if d[:2] == (envelope["id"], "tests.order_effect")]

    wait_for(lambda: len(runs()) == 2, what="the second delivery")
    assert [outcome for *_, outcome in runs()] == ["done", "done"]
    assert Effect.objects.filter(event_id=created.event_id).count() == 1
    markers = ProcessedEvent.objects.filter(event_id=created.event_id, subscriber="tests.order_effect")
    assert markers.count() == 1


def test_when_is_applied_before_any_work(consuming_worker, deliveries):
    ids = product_updated("price", "stock", "edited")

    wait_for(
        lambda: Effect.objects.filter(event_id__in=ids.values()).count() == 2, what="the two matching runs"
    )
    effects = Effect.objects.filter(event_id__in=ids.values()).values_list("subscriber", "event_id")
    assert set(effects) == {("restock_audit", ids["stock"]), ("catalogue_change", ids["edited"])}
    ran = {(event_id, name) for event_id, name, *_ in deliveries if name.startswith("tests.")}
    # No pool job ran tests.* for the price change, nor the other condition's subscriber.
    assert ran == {(str(ids["stock"]), "tests.restock_audit"), (str(ids["edited"]), "tests.catalogue_change")}
    assert not ProcessedEvent.objects.filter(event_id=ids["price"], subscriber__startswith="tests.").exists()


def test_the_publishing_request_id_reaches_the_subscriber(consuming_worker):
    token = request_id_var.set("req-consume-7")
    try:
        with transaction.atomic():
            created = events.publish("order.created", {"order_id": "C-5"})
    finally:
        request_id_var.reset(token)

    effect = wait_for(lambda: Effect.objects.filter(event_id=created.event_id).first(), what="the effect")
    assert effect.request_id == "req-consume-7"


def dead_letter_message(group: str):
    with app.connection_for_read() as conn:
        dlq = consumer.events_dead_letter_queue(group)(conn.default_channel)
        return wait_for(lambda: dlq.get(no_ack=True), what=f"the message on {group}.events.dlq")


def test_poison_is_retried_with_growing_gaps_dead_lettered_then_replayed(
    consuming_worker, redis_client, deliveries
):
    with transaction.atomic():
        event = events.publish("order.cancelled", {"order_id": "C-9"})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.poison").first(),
        timeout=30,
        what="the dead letter",
    )
    attempts = [float(t) for t in redis_client.lrange(f"poison:{event.event_id}", 0, -1)]
    assert len(attempts) == 4 == letter.attempts  # the first try and 3 retries
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] < gaps[1] < gaps[2]  # 1 s, 2 s, 4 s
    poison_runs = [(attempt, outcome) for e, n, attempt, outcome in deliveries if n == "tests.poison"]
    assert poison_runs == [(0, "retry"), (1, "retry"), (2, "retry"), (3, "dead")]
    assert "downstream still unavailable" in letter.error
    assert "TransientError" in letter.traceback
    assert letter.resolved_at is None
    # The other subscriber of the same event was not held back, nor run again by the retries.
    assert Effect.objects.filter(event_id=event.event_id, subscriber="order_effect").count() == 1
    message = dead_letter_message("default")
    assert message.headers[consumer.SUBSCRIBER_HEADER] == "tests.poison"
    assert json.loads(message.body)["id"] == str(event.event_id)

    redis_client.set("poison:fixed", 1)  # the fix is deployed
    dead_letter_replay(dead_letter_id=letter.pk)

    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        what="the replay to resolve the dead letter",
    )
    assert Effect.objects.filter(event_id=event.event_id, subscriber="poison").count() == 1
    assert Effect.objects.filter(event_id=event.event_id, subscriber="order_effect").count() == 1


# A retry of a replayed delivery is still a replay: the retry that succeeds resolves the letter.
def test_a_replay_that_succeeds_on_its_retry_resolves_the_dead_letter(consuming_worker, redis_client):
    with transaction.atomic():
        event = events.publish("order.cancelled", {"order_id": "C-10"})
    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.poison").first(),
        timeout=30,
        what="the dead letter",
    )
    tries = f"poison:{event.event_id}"
    assert redis_client.llen(tries) == 4

    dead_letter_replay(dead_letter_id=letter.pk)  # the downstream is still down for the replay...
    wait_for(lambda: redis_client.llen(tries) == 5, timeout=60, what="the replay's first try")
    redis_client.set("poison:fixed", 1)  # ...and back before its first retry (1 s later)

    # Generous: on a loaded machine (CI shares its cores) the retry's round trip through its
    # TTL queue has taken over 20 s.
    wait_for(lambda: redis_client.llen(tries) == 6, timeout=60, what="the replay's retry")
    effect = Effect.objects.filter(event_id=event.event_id, subscriber="poison")
    wait_for(effect.exists, timeout=30, what="the effect")
    wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=False).exists(),
        timeout=5,
        what="the replay's successful retry to resolve the dead letter",
    )
    assert effect.count() == 1


def test_a_subscriber_bug_is_dead_lettered_at_once(consuming_worker, deliveries):
    with transaction.atomic():
        event = events.publish("order.fulfilled", {"order_id": "C-11"})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.broken").first(),
        what="the dead letter",
    )
    assert letter.attempts == 1  # not a transient error: no retries
    assert letter.error.startswith("ValueError: unexpected shape")
    assert "ValueError" in letter.traceback
    message = dead_letter_message("default")
    assert message.headers[consumer.SUBSCRIBER_HEADER] == "tests.broken"
    assert json.loads(message.body)["id"] == str(event.event_id)
    wait_for(
        lambda: Effect.objects.filter(event_id=event.event_id, subscriber="order_effect").exists(),
        what="the other subscriber's effect",
    )
    assert [(a, o) for e, n, a, o in deliveries if n == "tests.broken"] == [(0, "dead")]


def test_a_failure_that_could_not_be_recorded_is_tried_again(consuming_worker, deliveries, monkeypatch):
    from core.events import runner

    record, calls = runner.dead_letter_record, []

    def database_gone_once(**kwargs):
        calls.append(kwargs["subscriber"])
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return record(**kwargs)

    monkeypatch.setattr(runner, "dead_letter_record", database_gone_once)
    with transaction.atomic():
        event = events.publish("order.fulfilled", {"order_id": "C-12"})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.broken").first(),
        timeout=30,
        what="the dead letter, recorded on the second try",
    )
    assert letter.attempts == 1 and calls == ["tests.broken", "tests.broken"]
    assert [(a, o) for e, n, a, o in deliveries if n == "tests.broken"] == [(0, "retry"), (0, "dead")]


def test_sigkill_of_the_worker_mid_subscriber_leaves_one_effect(consuming, worker_processes, redis_client):
    first = worker_processes("bookings,events,default", env=CONSUMER_ENV)
    with transaction.atomic():
        event = events.publish("booking.created", {"booking_id": "C-B9", "sleep": 3})

    wait_for(lambda: redis_client.llen(f"started:{event.event_id}") == 1, what="the subscriber to start")
    first.kill()  # mid-transaction: its effect row was written but never committed
    assert not Effect.objects.filter(event_id=event.event_id).exists()

    worker_processes("bookings,events,default", env=CONSUMER_ENV)  # the unacknowledged message again

    wait_for(
        lambda: Effect.objects.filter(event_id=event.event_id).exists(),
        timeout=60,
        what="the redelivered run",
    )
    assert redis_client.llen(f"started:{event.event_id}") == 2  # it ran twice...
    assert Effect.objects.filter(event_id=event.event_id).count() == 1  # ...with one effect
    assert ProcessedEvent.objects.filter(event_id=event.event_id).count() == 1


def test_sigkill_of_the_pool_child_mid_batch_leaves_every_effect_once(
    consuming, worker_processes, redis_client
):
    worker_processes("bookings,events,default", env=CONSUMER_ENV)  # one pool process
    with transaction.atomic():  # one commit: the consumer hands them to one pool job
        published = [
            events.publish(
                "booking.created", {"booking_id": f"C-M{n}", "sleep_after_commit": 30 if n == 3 else 0}
            )
            for n in range(10)
        ]
    ids = [event.event_id for event in published]

    # The fourth committed; the pool process dawdles before the rest, every message unacknowledged.
    child_pid = int(wait_for(lambda: redis_client.lpop(f"committed:{ids[3]}"), what="the fourth commit"))
    assert Effect.objects.filter(event_id__in=ids).count() == 4
    os.kill(child_pid, signal.SIGKILL)

    # The job is lost: its messages go back to the queue and a new pool process takes them; the
    # first four find their processed-event rows, the other six run.
    wait_for(
        lambda: Effect.objects.filter(event_id__in=ids).count() == 10,
        timeout=60,
        what="the other six effects",
    )
    wait_for(
        lambda: queue_messages("bookings.events") == 0, timeout=60, interval=1, what="every message acked"
    )
    assert sorted(Effect.objects.filter(event_id__in=ids).values_list("event_id", flat=True)) == sorted(ids)
    assert ProcessedEvent.objects.filter(event_id__in=ids, subscriber="tests.slow_booking").count() == 10
    assert [redis_client.llen(f"started:{event_id}") for event_id in ids] == [1] * 10  # none ran twice


def test_a_subscriber_past_its_time_limit_is_interrupted_retried_then_dead_lettered(
    consuming, worker_processes, redis_client
):
    worker_processes(
        "bookings,events,default", env={**CONSUMER_ENV, "TEST_EVENTS_SUBSCRIBER_TIME_LIMIT": "1"}
    )
    with transaction.atomic():
        event = events.publish("booking.created", {"booking_id": "C-T1", "sleep": 30})

    letter = wait_for(
        lambda: DeadLetter.objects.filter(event_id=event.event_id, subscriber="tests.slow_booking").first(),
        timeout=60,
        what="the dead letter",
    )
    assert letter.error.startswith("SubscriberTimeLimit: took more than 1 s")
    assert letter.attempts == 4  # the first try and 3 retries, each interrupted after a second
    assert redis_client.llen(f"started:{event.event_id}") == 4
    assert not Effect.objects.filter(event_id=event.event_id).exists()  # each try rolled back


def test_a_slow_subscriber_does_not_hold_back_another_group(consuming_worker, redis_client):
    with transaction.atomic():
        booking = events.publish("booking.created", {"booking_id": "C-B1", "sleep": 8})
    wait_for(lambda: redis_client.llen(f"started:{booking.event_id}") == 1, what="the slow subscriber")

    with transaction.atomic():
        order = events.publish("order.created", {"order_id": "C-O1"})

    wait_for(lambda: Effect.objects.filter(event_id=order.event_id).exists(), what="the order's effect")
    # ...while the booking's subscriber still sleeps in its transaction.
    assert not Effect.objects.filter(event_id=booking.event_id).exists()
    assert redis_client.llen(f"committed:{booking.event_id}") == 0
    wait_for(
        lambda: Effect.objects.filter(event_id=booking.event_id).exists(), timeout=30, what="the slow one"
    )


def refunds(count: int, *, bad: int | None = None) -> list:
    with transaction.atomic():
        return [
            events.publish("order.refunded", {"order_id": f"C-R{n}", **({"bad": True} if n == bad else {})})
            for n in range(count)
        ]


def test_a_subscriber_that_declared_batch_commits_several_events_together(consuming, redis_client):
    ids = [event.event_id for event in refunds(10)]
    relay_run(force=True)  # on the queue before the worker starts: it takes them all at once

    with running_worker():
        wait_for(
            lambda: Effect.objects.filter(event_id__in=ids, subscriber="refund_ledger").count() == 10,
            what="the batch's effects",
        )
    assert ProcessedEvent.objects.filter(event_id__in=ids, subscriber="tests.refund_ledger").count() == 10
    transactions = {redis_client.get(f"txid:{event_id}") for event_id in ids}
    assert len(transactions) < len(ids)  # events shared transactions
    # The group's other subscriber, which did not declare batch, ran once per event.
    assert Effect.objects.filter(event_id__in=ids, subscriber="order_effect").count() == 10


def test_a_batch_with_a_bad_event_runs_one_by_one_and_only_the_bad_one_is_dead_lettered(
    consuming, deliveries
):
    ids = [event.event_id for event in refunds(10, bad=4)]
    relay_run(force=True)

    with running_worker():
        letter = wait_for(
            lambda: DeadLetter.objects.filter(subscriber="tests.refund_ledger").first(),
            what="the dead letter",
        )
        wait_for(
            lambda: Effect.objects.filter(event_id__in=ids, subscriber="refund_ledger").count() == 9,
            what="the nine others' effects",
        )
    assert letter.event_id == ids[4] and letter.attempts == 1
    assert letter.error == "ValueError: a refund without an amount"
    good = set(ids) - {ids[4]}
    assert set(Effect.objects.filter(subscriber="refund_ledger").values_list("event_id", flat=True)) == good
    assert ProcessedEvent.objects.filter(subscriber="tests.refund_ledger").count() == 9
    ran = [(event_id, outcome) for event_id, name, _, outcome in deliveries if name == "tests.refund_ledger"]
    assert sorted(ran) == sorted([(str(e), "done") for e in good] + [(str(ids[4]), "dead")])


def test_the_consumer_needs_rabbitmq():
    with pytest.raises(ImproperlyConfigured, match="EVENTS_CONSUMER"):
        consumer.check_transport("filesystem://")
    consumer.check_transport("amqp://guest:guest@127.0.0.1:5672//")  # RabbitMQ: fine


def test_batch_is_a_count_of_events():
    with pytest.raises(ValueError, match="batch="):
        events.subscriber("order.paid", name="tests.never", batch=0)
