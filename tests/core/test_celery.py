"""The Celery foundation against the real RabbitMQ, PostgreSQL and a real worker."""

import itertools
import json
import uuid
from datetime import datetime, timedelta
from io import StringIO

import pytest
from celery.signals import task_prerun, task_revoked
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from kombu import Queue

from config.celery import app
from core.logging import request_id_var
from core.models import Heartbeat
from core.queues import QUEUE_NAMES, dead_letter_queue, work_queue
from core.tasks import heartbeat
from tests.conftest import running_worker, wait_for
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


def test_celery_roundtrip_command_sees_the_worker_and_says_which_broker_and_database(celery_worker):
    out = StringIO()
    call_command("celery_roundtrip", "--timeout", "20", stdout=out)

    assert "round trip ok" in out.getvalue()
    assert Heartbeat.objects.filter(name="roundtrip").exists()
    broker = app.conf.broker_url.replace("guest:guest@", "guest:**@")
    assert f"broker:   {broker}" in out.getvalue()
    assert f"/{connection.settings_dict['NAME']}" in out.getvalue()


def test_a_worker_process_runs_a_task_from_the_test_broker_into_the_test_database(worker_processes):
    worker_processes("default")
    name = f"process-{uuid.uuid4().hex[:8]}"

    heartbeat.delay(name)

    wait_for(lambda: Heartbeat.objects.filter(name=name).exists(), what="the worker process's heartbeat row")


def _queued(queue: Queue, task_id: str) -> dict | None:
    """The properties and headers of the task's message on `queue`, left where it was."""
    with app.connection_for_read() as conn:
        bound = queue(conn.default_channel)
        seen = []
        try:
            while (message := bound.get(no_ack=False)) is not None:
                seen.append(message)
                if message.headers.get("id") == task_id:
                    return {"properties": dict(message.properties), "headers": dict(message.headers)}
        finally:
            for message in seen:
                message.requeue()
    return None


def test_an_expired_periodic_task_is_dropped_by_the_worker_never_dead_lettered():
    """Beat publishes core.events.sweep with `expires`; no worker takes it in time (RabbitMQ or
    the workers restarting). It must not end on events.dlq: the worker drops it, acknowledged."""
    app.control.purge()
    _drain(dead_letter_queue("events"))
    call_command("setup_periodic_tasks", stdout=StringIO())
    PeriodicTask.objects.filter(task="core.events.sweep").update(expire_seconds=1)
    entry = ModelEntry(PeriodicTask.objects.get(task="core.events.sweep"), app=app)
    revoked, started = {}, set()

    def on_revoked(request=None, expired=None, **kwargs):
        revoked[request.id] = expired

    def on_prerun(task_id=None, **kwargs):
        started.add(task_id)

    task_revoked.connect(on_revoked, weak=False)
    task_prerun.connect(on_prerun, weak=False)
    try:
        result = DatabaseScheduler(app=app, lazy=True).apply_async(entry, advance=False)

        queued = _queued(work_queue("events"), result.id)
        assert queued is not None, "beat's message is not on the events queue"
        assert "expiration" not in queued["properties"]  # no RabbitMQ TTL, hence no dead-lettering
        expires = datetime.fromisoformat(queued["headers"]["expires"])
        assert expires <= timezone.now() + timedelta(seconds=1)  # Celery's expires is still there
        # Past its expiry (a TTL would have dead-lettered it by now) it still waits for a worker.
        wait_for(lambda: timezone.now() > expires + timedelta(seconds=0.5), timeout=5, what="the expiry")
        assert _queued(work_queue("events"), result.id) is not None
        assert not [m for m in _drain(dead_letter_queue("events")) if m.headers.get("id") == result.id]

        with running_worker():
            wait_for(lambda: result.id in revoked, what="the worker to drop the expired task")
    finally:
        task_revoked.disconnect(on_revoked)
        task_prerun.disconnect(on_prerun)

    assert revoked[result.id] is True  # dropped as expired
    assert result.id not in started  # and never run
    assert _queued(work_queue("events"), result.id) is None  # acknowledged
    assert not [m for m in _drain(dead_letter_queue("events")) if m.headers.get("id") == result.id]
