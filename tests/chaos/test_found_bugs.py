"""The chaos run's failures, each reproduced on its own, deterministically, and fixed: a task
that lost its database connection is retried (payments' gateway tasks, the toybox build), and
a subscriber that committed while the broker refused is neither failed nor leaves work undone.

Each catches the work at the moment the chaos run's fault hit it: a task waiting for a row
lock when PostgreSQL terminates its backend, a subscriber committing while RabbitMQ refuses.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from core.events.consumer import run_deliveries
from core.events.tasks import sweep as events_sweep
from core.models import DeadLetter, OutboxEvent
from orders.models import Variant
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, SandboxCharge
from payments.registry import gateway_for
from subscriptions.models import Invoice, Toybox
from tests.chaos.faults import harness_connection
from tests.conftest import wait_for
from tests.events.test_broker_recovery import VHOST, broker_outage
from tests.payments.test_sandbox_e2e import start_sandbox_payment
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory
from tests.subscriptions.helpers import batch, client_for, sandbox_pay, subscribe

pytestmark = [pytest.mark.chaos, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# A transient error retried with the backoff of the tasks' own retries (1, 2, 4 s) is done by then.
RETRIED_WITHIN = 20


def waiting_behind(blocker: int) -> int | None:
    """The pid of a backend waiting for a lock the backend `blocker` holds, if there is one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [blocker])
        row = cursor.fetchone()
    return row[0] if row else None


def terminate_when_waiting(db, table: str) -> None:
    """Terminate the backend that waits for the rows of `table` that `db` holds (a failover, mid-task)."""
    pid = wait_for(lambda: waiting_behind(db.info.backend_pid), timeout=60, what=f"a task to wait on {table}")
    db.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_webhook_whose_task_lost_its_database_connection_is_processed_after_a_retry(
    worker_processes, client
):
    payment, _ = start_sandbox_payment()
    SandboxCharge.objects.filter(reference=payment.gateway_reference).update(status="succeeded")  # paid
    sandbox = gateway_for("sandbox")
    body = sandbox.webhook_body(SandboxCharge.objects.get(reference=payment.gateway_reference))
    worker_processes("payments")

    with harness_connection() as db, db.transaction():
        db.execute(f'SELECT 1 FROM "{Payment._meta.db_table}" WHERE id = %s FOR UPDATE', [payment.pk])  # noqa: S608
        for _ in range(2):  # the provider's webhook, and its copy
            response = client.post(
                "/api/payments/webhook/sandbox",
                body,
                content_type="application/json",
                headers={SIGNATURE_HEADER: sign(body, sandbox.secret)},
            )
            assert response.status_code == 200
        terminate_when_waiting(db, Payment._meta.db_table)

    wait_for(
        lambda: Payment.objects.get(pk=payment.pk).status == "succeeded",
        timeout=RETRIED_WITHIN,
        interval=0.5,
        what="the payment paid at the gateway to succeed here",
    )


def _paid_subscription_invoice():
    """A subscription whose first invoice is paid at the sandbox: payment.completed in the outbox."""
    child = ChildFactory()
    toys = [ToyFactory(stock_on_hand=5) for _ in range(3)]
    api = client_for(child.customer)
    subscription_id = subscribe(api, child, PlanFactory(toys_per_box=3)).json()["id"]
    payment = sandbox_pay(batch(api, subscription_id).json()["id"])
    return payment, toys


def test_a_toybox_whose_build_lost_its_database_connection_is_built_after_a_retry(worker_processes):
    _, toys = _paid_subscription_invoice()
    with harness_connection() as db, db.transaction():
        db.execute(
            f'SELECT 1 FROM "{Variant._meta.db_table}" WHERE id = ANY(%s) FOR UPDATE',  # noqa: S608
            [[t.pk for t in toys]],
        )
        worker_processes("subscriptions,events,default,payments")
        terminate_when_waiting(db, Variant._meta.db_table)

    wait_for(
        lambda: Toybox.objects.filter(status="ready").exists(),
        timeout=RETRIED_WITHIN,
        interval=0.5,
        what="the paid period's toybox to be built",
    )


@pytest.mark.skipif(
    VHOST == "/" and os.environ.get("TEST_STOP_RABBITMQ") != "1",
    reason="needs a RabbitMQ vhost of the tests' own, or TEST_STOP_RABBITMQ=1",
)
def test_a_subscriber_that_committed_while_the_broker_refused_leaves_nothing_undone_on_its_return(
    worker_processes,
):
    """The chaos run's CI failure: a paid invoice's box left `building` for minutes. Its build
    used to be a task sent after the subscriber's commit; a broker refusing then (or a worker
    killed between the commit and the send) lost it, and only beat's five-minute toybox sweep
    built the box. The build now follows invoice.paid, kept in the outbox with the box."""
    payment, _ = _paid_subscription_invoice()
    completed = OutboxEvent.objects.get(type="payment.completed", aggregate_id=payment.public_id)
    delivery = (completed.envelope, ["subscriptions.on_payment_completed"], 0, False, None)

    def deliver() -> list:
        try:
            return run_deliveries([delivery])
        finally:
            connection.close()

    with broker_outage(), ThreadPoolExecutor(1) as pool:  # a thread: no SIGALRM limit over pytest-timeout's
        [outcomes] = pool.submit(deliver).result(timeout=120)

    assert Invoice.objects.get().status == "paid"  # the effect committed
    assert (outcomes, list(DeadLetter.objects.values_list("subscriber", "error"))) == ([("done",)], [])
    assert Toybox.objects.get().status == "building"

    worker_processes("subscriptions,events,default,payments")
    events_sweep.delay()  # beat's outbox sweep, every EVENTS_SWEEP_SECONDS: what the outage kept waiting
    wait_for(
        lambda: Toybox.objects.filter(status="ready").exists(),
        timeout=RETRIED_WITHIN,
        interval=0.5,
        what="the box of the invoice paid during the outage to be built",
    )
