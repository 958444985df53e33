"""RabbitMQ itself stopped: publishing still commits, and the relay delivers once it is back."""

import os
import shutil
import subprocess
import uuid

import pika
import pytest
from django.conf import settings
from django.db import transaction

from core import events
from core.events.relay import relay_run
from core.models import OutboxEvent
from tests.conftest import wait_for
from tests.events.test_backbone import pika_parameters

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # It stops the RabbitMQ application for a few seconds, for everyone using it: opt in.
    pytest.mark.skipif(
        os.environ.get("TEST_STOP_RABBITMQ") != "1" or shutil.which("rabbitmqctl") is None,
        reason="set TEST_STOP_RABBITMQ=1 (and have rabbitmqctl) to stop and restart the broker",
    ),
]


def rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, capture_output=True, timeout=120)  # noqa: S603, S607


def broker_answers() -> bool:
    try:
        pika.BlockingConnection(pika_parameters()).close()
    except pika.exceptions.AMQPError:
        return False
    return True


def test_publish_commits_while_rabbitmq_is_down_and_the_relay_delivers_after(caplog):
    queue = f"test.broker-down.{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika_parameters())
    channel = connection.channel()
    channel.exchange_declare(settings.EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, settings.EVENTS_EXCHANGE, routing_key="order.#")
    connection.close()

    rabbitmq("stop_app")
    try:
        with transaction.atomic():
            published = [events.publish("order.created", {"order_id": f"D-{i}"}) for i in range(20)]
        # The transaction committed; the kick could not reach the broker and said so.
        assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 20
        assert "could not kick the event relay" in caplog.text
        result = relay_run(force=True)
        assert result.failed
        assert result.published == 0
        assert OutboxEvent.objects.first().last_error  # why it waits is on the row
    finally:
        rabbitmq("start_app")
        wait_for(broker_answers, timeout=60, interval=0.5, what="RabbitMQ to come back")

    result = relay_run(force=True)
    assert result.published == 20
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()

    connection = pika.BlockingConnection(pika_parameters())
    channel = connection.channel()
    try:
        received = []
        while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
            received.append(message[1].message_id)
        assert received == [str(e.event_id) for e in published]
    finally:
        channel.queue_delete(queue)
        connection.close()
