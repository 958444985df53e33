"""End to end with real workers: a batch payment through the sandbox page pays two invoices, and
two toyboxes are built and announced on the exchange; repeated payment.completed deliveries and
a worker SIGKILLed mid-build leave exactly one box per paid period, its stock reserved once."""

import pytest
from django.db import connection, transaction
from django.test import override_settings

from core import events
from core.events.registry import SUBSCRIBERS
from core.models import OutboxEvent, ProcessedEvent
from orders.models import Variant
from payments.models import Payment
from subscriptions.models import Invoice, Subscription, Toybox
from tests.conftest import wait_for
from tests.events.test_backbone import ExternalConsumer
from tests.factories import UserFactory
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory, born_months_ago
from tests.subscriptions.helpers import batch, client_for, sandbox_pay, subscribe

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(live_server):
    with override_settings(SITE_URL=live_server.url):
        yield live_server


def test_one_batch_payment_builds_two_toyboxes_seen_by_an_outside_consumer(site, celery_worker, client):
    parent = UserFactory()
    mia = ChildFactory(customer=parent, birth_date=born_months_ago(30), interests=["music"])
    leo = ChildFactory(customer=parent, birth_date=born_months_ago(90), interests=["stem"])
    for sku, ages, tags in [
        ("RATTLE", (0, 12), []),  # too young for both
        ("DRUM", (18, 48), ["music"]),
        ("BLOCKS", (18, 48), []),
        ("RINGS", (12, 40), []),
        ("ROBOT", (72, 144), ["stem"]),
        ("MICROSCOPE", (72, 144), ["stem"]),
        ("KITE", (60, 144), []),
    ]:
        ToyFactory(sku=sku, age_min_months=ages[0], age_max_months=ages[1], tags=tags)
    plan = PlanFactory(toys_per_box=2, age_min_months=12, age_max_months=144)
    api = client_for(parent)
    first, second = (subscribe(api, child, plan).json()["id"] for child in (mia, leo))
    consumer = ExternalConsumer("toybox.#")
    try:
        response = batch(api, first, second)
        assert response.status_code == 201, response.json()
        page = response.json()["checkout_url"].removeprefix(site.url)
        assert b"60.00 USD" in client.get(page).content
        client.post(page, {"action": "pay"})

        received = consumer.take(2, timeout=90)
    finally:
        consumer.close()

    assert [envelope["type"] for _, envelope in received] == ["toybox.created", "toybox.created"]
    by_child = {envelope["data"]["child_id"]: envelope["data"] for _, envelope in received}
    assert set(by_child) == {mia.pk, leo.pk}
    payment_id = response.json()["id"]
    for data in by_child.values():
        assert data["user_id"] == parent.pk and data["payment_id"] == payment_id
        assert {data["subscription_id"]} <= {first, second} and data["toybox_id"].startswith("box_")
    assert "DRUM" in {t["sku"] for t in by_child[mia.pk]["toys"]}  # her interest first
    assert {t["sku"] for t in by_child[leo.pk]["toys"]} == {"ROBOT", "MICROSCOPE"}  # age and interest
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert set(Subscription.objects.values_list("status", flat=True)) == {"active"}
    mia_toys = set(Toybox.objects.get(child=mia).items.values_list("sku", flat=True))
    assert "RATTLE" not in mia_toys and not mia_toys & {"ROBOT", "MICROSCOPE", "KITE"}


def _build_waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps the first snapshot of the activity view: drop it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE %s",
            ["%orders_variant%FOR UPDATE%"],
        )
        return cursor.fetchone()[0] > 0


def test_repeated_completions_and_a_killed_builder_leave_one_box_and_one_reservation(worker_processes):
    child = ChildFactory()
    toys = [ToyFactory(stock_on_hand=4) for _ in range(3)]
    api = client_for(child.customer)
    subscription_id = subscribe(api, child, PlanFactory(toys_per_box=3)).json()["id"]
    payment = sandbox_pay(batch(api, subscription_id).json()["id"])  # payment.completed, in the outbox
    queues = "subscriptions,events,default,payments"

    with transaction.atomic():  # the toys' rows locked: the build will wait inside its transaction
        list(Variant.objects.select_for_update().filter(pk__in=[t.pk for t in toys]))
        first = worker_processes(queues)
        wait_for(_build_waiting_on_a_lock, timeout=60, what="the toybox build to wait on the stock's rows")
        first.kill()  # SIGKILL mid-build: its transaction dies with its connection
    assert Toybox.objects.get().status == "building" and not Toybox.objects.get().items.exists()

    # payment.completed four more times: the same message redelivered, and copies under new ids.
    completed_event = OutboxEvent.objects.get(type="payment.completed", aggregate_id=payment.public_id)
    subscriber = SUBSCRIBERS["subscriptions.on_payment_completed"]
    for _ in range(2):
        subscriber.task.apply_async(args=[completed_event.envelope], queue=subscriber.queue)
    for _ in range(2):
        with transaction.atomic():
            events.publish("payment.completed", completed_event.data, aggregate_id=payment.public_id)

    worker_processes(queues)  # RabbitMQ hands the unacknowledged build to the new worker
    wait_for(lambda: Toybox.objects.get().status == "ready", timeout=90, what="the toybox to be built")
    wait_for(
        lambda: ProcessedEvent.objects.filter(subscriber="subscriptions.on_payment_completed").count() == 3,
        timeout=60,
        what="every delivery of payment.completed to be handled",
    )

    assert Toybox.objects.count() == 1 and Toybox.objects.get().items.count() == 3
    assert (
        sum(Variant.objects.filter(pk__in=[t.pk for t in toys]).values_list("stock_reserved", flat=True)) == 3
    )
    assert OutboxEvent.objects.filter(type="toybox.created").count() == 1
    assert OutboxEvent.objects.filter(type="invoice.paid").count() == 1
    assert Payment.objects.get(pk=payment.pk).allocations.get().outcome == "accepted"
