"""GET /metrics: closed without its token, and its figures move with what happens in the system."""

import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from core import events
from core.models import DeadLetter, Heartbeat, OutboxEvent
from core.queues import declare_topology
from notifications.models import Notification
from payments.models import Payment, WebhookEvent
from tests.conftest import child_env, wait_for
from tests.core.tasks import always_transient, record_request_id
from tests.factories import StaffFactory, SuperuserFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.payments.test_models import make_payment

# These tests publish made-up event data: what they test is not an app's contract.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("any_event_data")]

TOKEN = "metrics-test-token"


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value, read with prometheus_client's own parser."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, metric: str, /, **labels) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


# --- The endpoint ----------------------------------------------------------------------------
def test_the_endpoint_refuses_a_missing_or_wrong_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "no-cache" in response["Cache-Control"]
    assert b"fulfil_outbox_lag_seconds" in response.content


def test_without_a_token_configured_the_endpoint_is_absent_except_for_superusers(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    client.force_login(UserFactory())
    assert client.get("/metrics").status_code == 404
    client.force_login(StaffFactory())  # staff without every app's permissions: not all figures
    assert client.get("/metrics").status_code == 404
    client.force_login(SuperuserFactory())
    assert client.get("/metrics").status_code == 200


def test_a_missing_multiprocess_directory_never_fails_a_request(client, monkeypatch, tmp_path, caplog):
    from core import metrics

    def gone(*args, **kwargs):
        raise FileNotFoundError(tmp_path / "gone" / "histogram_1.db")

    monkeypatch.setattr(metrics.REQUEST_SECONDS, "labels", gone)

    assert client.get("/healthz").status_code == 200
    assert "could not record request metrics" in caplog.text


def test_only_get_and_head_are_answered(client):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}

    assert client.post("/metrics", **auth).status_code == 405
    assert client.delete("/metrics", **auth).status_code == 405
    head = client.head("/metrics", **auth)
    assert head.status_code == 200
    assert head.content == b""


# --- The project's figures -------------------------------------------------------------------
def test_outbox_lag_and_unpublished_count_move_when_an_event_waits(client):
    before = scrape(client)
    assert value(before, "fulfil_outbox_lag_seconds") == 0
    assert value(before, "fulfil_outbox_unpublished") == 0

    with transaction.atomic():  # the test's transaction never commits: no relay takes it
        event = events.publish("order.paid", {"order_id": "A-1"})
    OutboxEvent.objects.filter(pk=event.pk).update(occurred_at=timezone.now() - timedelta(seconds=120))

    waiting = scrape(client)
    assert 120 <= value(waiting, "fulfil_outbox_lag_seconds") < 180
    assert value(waiting, "fulfil_outbox_unpublished") == 1

    OutboxEvent.objects.filter(pk=event.pk).update(published_at=timezone.now())
    published = scrape(client)
    assert value(published, "fulfil_outbox_lag_seconds") == 0
    assert value(published, "fulfil_outbox_unpublished") == 0


def test_dead_letter_gauge_counts_unresolved_letters_per_subscriber(client):
    subscriber = "tests.order_paid_audit"  # a registered subscriber: its series exists at 0
    assert value(scrape(client), "fulfil_dead_letters", subscriber=subscriber) == 0

    with transaction.atomic():
        envelope = events.publish("order.paid", {"order_id": "A-1"}).envelope
    now = timezone.now()
    letter = DeadLetter.objects.create(
        event_id=envelope["id"],
        event_type=envelope["type"],
        subscriber=subscriber,
        envelope=envelope,
        error="TransientError: boom",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
    )
    assert value(scrape(client), "fulfil_dead_letters", subscriber=subscriber) == 1

    DeadLetter.objects.filter(pk=letter.pk).update(resolved_at=timezone.now())
    assert value(scrape(client), "fulfil_dead_letters", subscriber=subscriber) == 0


def test_payments_by_status_and_gateway_and_flagged(client):
    make_payment(status=Payment.Status.PENDING)
    make_payment(status=Payment.Status.PENDING)
    make_payment(status=Payment.Status.SUCCEEDED, flagged_reason="paid after expiry; refund by hand")
    make_payment(gateway="stripe", status=Payment.Status.FAILED)

    samples = scrape(client)

    assert value(samples, "fulfil_payments", status="pending", gateway="sandbox") == 2
    assert value(samples, "fulfil_payments", status="succeeded", gateway="sandbox") == 1
    assert value(samples, "fulfil_payments", status="failed", gateway="sandbox") == 0
    assert value(samples, "fulfil_payments", status="failed", gateway="stripe") == 1
    assert value(samples, "fulfil_payments_flagged", gateway="sandbox") == 1
    assert value(samples, "fulfil_payments_flagged", gateway="stripe") == 0
    assert value(samples, "fulfil_payments", status="pending", gateway="paystack") is None  # never used


def test_webhook_outcomes_by_gateway(client):
    def webhook(**fields):
        defaults = {"gateway": "stripe", "event_id": uuid.uuid4().hex, "body": "{}", "signature_valid": True}
        return WebhookEvent.objects.create(**(defaults | fields))

    now = timezone.now()
    webhook(processed_at=now)
    webhook(processed_at=now)
    webhook(processed_at=now, error="no payment with reference 'x'")
    webhook()  # not processed yet
    webhook(event_id="", signature_valid=False, proof=WebhookEvent.Proof.NONE, error="bad signature")

    samples = scrape(client)

    outcomes = {
        outcome: value(samples, "fulfil_webhooks", gateway="stripe", outcome=outcome)
        for outcome in ("processed", "failed", "waiting", "refused")
    }
    assert outcomes == {"processed": 2, "failed": 1, "waiting": 1, "refused": 1}


def test_notifications_by_channel_and_status(client):
    NotificationFactory(channel="email", status=Notification.Status.FAILED)
    NotificationFactory(channel="email", status=Notification.Status.SENT)
    NotificationFactory(channel="email", status=Notification.Status.SENT)

    samples = scrape(client)

    assert value(samples, "fulfil_notifications", channel="email", status="sent") == 2
    assert value(samples, "fulfil_notifications", channel="email", status="failed") == 1
    assert value(samples, "fulfil_notifications", channel="sms", status="failed") == 0


def test_heartbeat_age_is_served_per_probe(client):
    Heartbeat.objects.create(name="beat", last_seen=timezone.now() - timedelta(minutes=3))

    assert 180 <= value(scrape(client), "fulfil_heartbeat_age_seconds", name="beat") < 240


# --- The broker ------------------------------------------------------------------------------
def test_queue_depth_counts_a_message_waiting(client, celery_app_without_worker):
    declare_topology()
    celery_app.control.purge()
    assert value(scrape(client), "fulfil_queue_messages", queue="default") == 0

    record_request_id.delay(f"depth:{uuid.uuid4().hex}")  # no worker runs: it waits in `default`

    samples = scrape(client)
    assert value(samples, "fulfil_broker_up") == 1
    assert value(samples, "fulfil_queue_messages", queue="default") == 1
    assert value(samples, "fulfil_queue_messages", queue="default.dlq") is not None
    assert value(samples, "fulfil_queue_consumers", queue="default") == 0


def test_a_broker_that_does_not_answer_leaves_the_scrape_answering(client, monkeypatch):
    unreachable = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1
    monkeypatch.setattr(
        celery_app, "connection_for_read", lambda **kw: Connection(unreachable, connect_timeout=1)
    )

    samples = scrape(client)

    assert value(samples, "fulfil_broker_up") == 0
    assert not [name for name, _ in samples if name == "fulfil_queue_messages"]
    assert value(samples, "fulfil_metrics_collector_up", collector="payments") == 1


# --- Task retries and failures, counted by the worker ---------------------------------------
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_task_retries_and_failures_are_counted_from_the_worker(client, celery_worker):
    task = "tests.always_transient"
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default.dlq")
    before = scrape(client)
    assert value(before, "fulfil_celery_task_retries_total", task=task) is None  # Redis is flushed per test

    always_transient.delay(f"retry:{uuid.uuid4().hex}")
    wait_for(
        lambda: value(scrape(client), "fulfil_celery_task_retries_total", task=task),
        what="the retry to be counted",
    )
    # Sent as if its retries were spent: this run fails for good (and is dead-lettered).
    always_transient.apply_async([f"fail:{uuid.uuid4().hex}"], retries=always_transient.max_retries)
    wait_for(
        lambda: value(scrape(client), "fulfil_celery_task_failures_total", task=task),
        what="the failure to be counted",
    )
    wait_for(
        lambda: value(scrape(client), "fulfil_queue_messages", queue="default.dlq"),
        what="the failed task on default.dlq",
    )
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default.dlq")


# --- Request metrics -------------------------------------------------------------------------
def test_request_metrics_count_a_request_by_route_and_status_class(client):
    def counts():
        samples = scrape(client)
        return (
            value(samples, "fulfil_http_responses_total", method="GET", route="healthz", status="2xx") or 0,
            value(samples, "fulfil_http_request_duration_seconds_count", method="GET", route="healthz") or 0,
            value(samples, "fulfil_http_responses_total", method="GET", route="unmatched", status="4xx") or 0,
        )

    before = counts()
    client.get("/healthz")
    client.get(f"/no-such-page-{uuid.uuid4().hex}")  # its path is not a label: "unmatched"

    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 1)


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import django, sys
    django.setup()
    from django.test import Client
    from django.test.utils import override_settings
    client = Client()
    client.get("/healthz")
    if sys.argv[1] == "scrape":
        with override_settings(METRICS_TOKEN="t"):
            sys.stdout.write(client.get("/metrics", HTTP_AUTHORIZATION="Bearer t").content.decode())
    """
)


def test_with_a_multiprocess_directory_a_scrape_adds_up_every_process(tmp_path):
    """As under gunicorn: each process writes its counts to PROMETHEUS_MULTIPROC_DIR, one serves all."""
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    def run(mode: str) -> str:
        return subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-c", MULTIPROCESS_SCRIPT, mode],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    run("request")
    output = run("scrape")

    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(output)
        for s in family.samples
    }
    assert value(samples, "fulfil_http_responses_total", method="GET", route="healthz", status="2xx") == 2
