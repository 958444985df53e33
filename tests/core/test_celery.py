"""The Celery foundation against the real RabbitMQ, PostgreSQL and a real worker."""

import itertools
import json
import uuid

import pytest
from kombu import Queue

from config.celery import app
from core.logging import request_id_var
from core.models import Heartbeat
from core.queues import QUEUE_NAMES, dead_letter_queue
from core.tasks import heartbeat
from tests.conftest import wait_for
from tests.core.tasks import always_transient, record_request_id

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _drain(queue: Queue) -> list:
    """Every message now on `queue` (acknowledged, so the queue is left empty)."""
    messages = []
    with app.connection_for_read() as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            messages.append(message)
    return messages


def test_task_goes_through_rabbitmq_to_the_worker_and_writes_postgres(celery_worker):
    assert app.conf.broker_url.startswith("amqp://")
    name = f"probe-{uuid.uuid4().hex[:8]}"

    heartbeat.delay(name)

    row = wait_for(lambda: Heartbeat.objects.filter(name=name).first(), what="the heartbeat row")
    assert row.count == 1


def test_transient_failure_is_retried_with_backoff_then_dead_lettered(celery_worker, redis_client):
    dlq = dead_letter_queue("default")
    _drain(dlq)
    key = f"attempts:{uuid.uuid4().hex}"

    result = always_transient.delay(key)

    def dead_lettered():
        return [m for m in _drain(dlq) if m.headers.get("id") == result.id]

    (message,) = wait_for(dead_lettered, timeout=30, what="the task on default.dlq")
    attempts = [float(t) for t in redis_client.lrange(key, 0, -1)]
    assert len(attempts) == 4  # the first run and 3 retries
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # retry_backoff=1 without jitter: countdowns of 1, 2 and 4 seconds.
    for gap, countdown in zip(gaps, [1, 2, 4], strict=True):
        assert countdown - 0.1 <= gap < countdown + 1.5
    death = message.headers["x-death"][0]
    assert death["reason"] == "rejected"
    assert death["queue"] == "default"
    assert json.loads(message.body)[0] == [key]  # the task's args travel with it
    redis_client.delete(key)


def test_every_queue_has_a_dead_letter_queue(celery_worker):
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in QUEUE_NAMES:
            # passive declare fails if the queue does not exist
            assert dead_letter_queue(name)(channel).queue_declare(passive=True) is not None


def test_request_id_travels_from_the_publisher_into_the_task(celery_worker, redis_client):
    key = f"request-id:{uuid.uuid4().hex}"
    token = request_id_var.set("req-abc-123")
    try:
        record_request_id.delay(key)
    finally:
        request_id_var.reset(token)

    assert wait_for(lambda: redis_client.get(key), what="the task's record") == b"req-abc-123"


def test_celery_roundtrip_command_sees_the_worker(celery_worker):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("celery_roundtrip", "--timeout", "20", stdout=out)

    assert "round trip ok" in out.getvalue()
    assert Heartbeat.objects.filter(name="roundtrip").exists()
