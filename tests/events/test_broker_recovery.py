"""After a broker outage, what was stored meanwhile is done within a minute of the broker's return.

The outage is real but confined to the tests' own virtual host: the broker user's permissions on
it are revoked (`rabbitmqctl clear_permissions`) and its open connections closed, so that every
connection is refused (the worker's, the web's kicks, beat's ticks, the relay), and then the
permissions are given back. Real beat and a real worker, which reconnects, do the rest:
beat's outbox sweep (every EVENTS_SWEEP_SECONDS) finds the relay backing off at most
EVENTS_RELAY_MAX_BACKOFF, and beat's webhook sweep (every PAYMENT_WEBHOOK_SWEEP_SECONDS) gives
the webhook stored during the outage the task its refused kick never sent. A refund asked for
during the outage stands, and reconciliation sends it; so does a renewal whose charge task
was refused, charged when its lease ends, and the sandbox page's answer whose webhook task was.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction

from core import events
from core.events import relay
from core.events.relay import BACKOFF_KEY, _backoff_record_failure, relay_run
from core.models import OutboxEvent
from payments import reconciliation, services
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, SandboxCharge, WebhookEvent
from payments.registry import gateway_for
from subscriptions import services as subscription_services
from subscriptions.models import Invoice, Subscription
from subscriptions.services.billing import ATTEMPT_LEASE
from subscriptions.services.renewals import due_invoices
from tests.conftest import child_env, wait_for
from tests.payments.test_sandbox_e2e import start_sandbox_payment
from tests.payments.test_services import paid_payment
from tests.subscriptions.factories import ChildFactory, PlanFactory
from tests.subscriptions.helpers import client_for, paid_subscription
from tests.testapp.models import Effect

RECOVERY_SECONDS = 60  # the promise: stored work is done within a minute of the broker's return

_broker = urlsplit(settings.CELERY_BROKER_URL)
VHOST = unquote(_broker.path[1:]) or "/"
USER = _broker.username or "guest"

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    # Revoking the user's permissions on a shared vhost ("/") would cut off everyone using it.
    pytest.mark.skipif(
        shutil.which("rabbitmqctl") is None or (VHOST == "/" and os.environ.get("TEST_STOP_RABBITMQ") != "1"),
        reason="needs rabbitmqctl, and a vhost of the tests' own or TEST_STOP_RABBITMQ=1",
    ),
]


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60)  # noqa: S603, S607
    return done.stdout


@contextmanager
def broker_outage():
    """While inside, the broker refuses this user every connection to VHOST, as if it were down.

    Open connections are closed too: RabbitMQ checks permissions when a channel first uses a
    resource, so a channel that published before would go on publishing.
    """
    granted = json.loads(rabbitmqctl("list_permissions", "-p", VHOST, "--formatter", "json", "--quiet"))
    mine = next(p for p in granted if p["user"] == USER)
    rabbitmqctl("clear_permissions", "-p", VHOST, USER)
    try:
        rabbitmqctl("close_all_connections", "--vhost", VHOST, "--limit", "1000", "tests: broker outage")
        yield
    finally:
        rabbitmqctl("set_permissions", "-p", VHOST, USER, mine["configure"], mine["write"], mine["read"])


class BeatProcess:
    """A real `celery beat` on the test database, with django-celery-beat's scheduler."""

    def __init__(self, workdir: Path):
        self.log = workdir / "beat.log"
        env = child_env(
            PYTHONPATH=str(settings.BASE_DIR),
            LOG_LEVEL="DEBUG",  # "Sending due task" of the frequent (quiet) tasks is a DEBUG line
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"],
                env=env,
                cwd=workdir,  # beat writes nothing into the project
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self, since: int = 0) -> str:
        return self.log.read_text(errors="replace")[since:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def beat(tmp_path):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    process = BeatProcess(tmp_path)
    wait_for(lambda: "Sending due task" in process.output(), timeout=30, what="beat's first tick")
    yield process
    process.stop()


def test_the_relay_tries_again_within_its_maximum_backoff_however_long_the_broker_was_gone():
    cache.set(BACKOFF_KEY, {"failures": 40, "until": 0}, timeout=3600)  # failing for hours

    assert _backoff_record_failure() == settings.EVENTS_RELAY_MAX_BACKOFF
    assert settings.EVENTS_RELAY_MAX_BACKOFF + settings.EVENTS_SWEEP_SECONDS < RECOVERY_SECONDS


def test_a_relay_connection_the_broker_closed_is_opened_again_not_taken_for_an_outage():
    """After a broker restart the kept connection is dead though the broker answers: the relay
    publishes on a new one at once instead of backing off until beat's sweep."""
    with transaction.atomic():
        events.publish("order.created", {"order_id": "R-1"})
    assert relay_run(force=True).published == 1
    assert relay._publisher is not None  # kept for the next run

    rabbitmqctl("close_all_connections", "--vhost", VHOST, "--limit", "1000", "tests: connections closed")
    with transaction.atomic():
        event = events.publish("order.created", {"order_id": "R-2"})
    result = relay_run(force=True)

    assert (result.published, result.failed) == (1, False)
    assert OutboxEvent.objects.get(event_id=event.event_id).published_at is not None
    assert not cache.get(BACKOFF_KEY)


def test_work_stored_while_the_broker_refused_everything_is_done_within_a_minute_of_its_return(
    celery_worker, beat, client, caplog
):
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")  # paid
    sandbox = gateway_for("sandbox")
    body = sandbox.webhook_body(SandboxCharge.objects.get(reference=payment.gateway_reference))

    with broker_outage():
        # The gateway's webhook arrives: stored and answered, its dispatch kick refused.
        response = client.post(
            "/api/payments/webhook/sandbox",
            body,
            content_type="application/json",
            headers={SIGNATURE_HEADER: sign(body, sandbox.secret)},
        )
        assert response.status_code == 200
        assert "could not kick webhook dispatch" in caplog.text
        # A sweep that cannot send the task releases its claim instead of keeping it for ten minutes.
        assert reconciliation.webhooks_sweep() == 0
        webhook = WebhookEvent.objects.get()
        assert (webhook.dispatched_at, webhook.processed_at) == (None, None)

        # A service commits an event: the commit stands, its relay kick is refused.
        with transaction.atomic():
            event = events.publish("order.created", {"order_id": "R-1"})
        assert "could not kick the event relay" in caplog.text
        # The relay fails as it would after a long outage (its backoff at the maximum).
        cache.set(BACKOFF_KEY, {"failures": 20, "until": 0}, timeout=3600)
        assert relay_run(force=True).failed

        ticked = len(beat.output())
        wait_for(
            lambda: "Couldn't apply scheduled task" in beat.output(ticked),
            timeout=30,
            what="beat's ticks to be refused by the broker",
        )

    back = time.monotonic()
    wait_for(
        lambda: Effect.objects.filter(event_id=event.event_id).exists(),
        timeout=RECOVERY_SECONDS,
        interval=0.5,
        what="the event stored during the outage to reach its subscriber",
    )
    event_done = time.monotonic() - back
    wait_for(
        lambda: Payment.objects.get(pk=payment.pk).status == "succeeded",
        timeout=RECOVERY_SECONDS - event_done,
        interval=0.5,
        what="the webhook stored during the outage to be processed",
    )
    webhook_done = time.monotonic() - back

    assert OutboxEvent.objects.get(pk=event.pk).published_at is not None
    assert WebhookEvent.objects.get().processed_at is not None
    assert max(event_done, webhook_done) < RECOVERY_SECONDS, f"{event_done=:.1f}s {webhook_done=:.1f}s"


def test_a_refund_asked_for_while_the_broker_refuses_stands_and_waits_for_reconciliation():
    """The refund is reserved and the caller (staff in the admin or the API, or a subscriber
    refusing money) gets it, not an error for a refund that stands; reconciliation sends it."""
    payment = paid_payment()

    with broker_outage():
        refund = services.refund_request(
            payment_id=payment.pk,
            amount="10.00",
            reason="damaged",
            idempotency_key="r-1",
            requested_by_id=None,
        )

    refund.refresh_from_db()
    assert (refund.status, refund.sent_at, refund.amount) == ("pending", None, Decimal("10.00"))
    assert reconciliation.refunds_unsent(older_than_seconds=0) == [refund.pk]


def test_a_renewal_whose_charge_the_broker_refuses_stands_and_is_charged_when_its_lease_ends():
    child = ChildFactory()
    subscription = paid_subscription(client_for(child.customer), child, PlanFactory(price="30.00"))
    due = subscription.current_period_end

    with broker_outage():
        invoice = subscription_services.subscription_renew(subscription_id=subscription.pk, now=due)

    assert invoice is not None and Invoice.objects.get(pk=invoice.pk).status == "open"
    assert Subscription.objects.get(pk=subscription.pk).next_renewal_at is None  # renewed once
    # Beat's dispatcher leaves it to the refused task until the lease ends, then charges it.
    assert list(due_invoices(due + ATTEMPT_LEASE - timedelta(seconds=1), 100)) == []
    assert list(due_invoices(due + ATTEMPT_LEASE, 100)) == [[invoice.pk]]


def test_a_sandbox_payment_page_answered_while_the_broker_refuses_keeps_the_answer(client):
    """The customer presses Pay: the charge is paid and the page goes on, though the webhook's
    task was refused (reconciliation verifies the payment, as for a webhook that never came)."""
    payment, url = start_sandbox_payment()

    with broker_outage():
        response = client.post(urlsplit(url).path, {"action": "pay"})

    assert response.status_code == 302
    assert SandboxCharge.objects.get(reference=payment.gateway_reference).status == "succeeded"
