"""Paying invoices: the batch payment, what payment.completed does (invoices paid, subscriptions
activated, one toybox per paid period), refusals, and repeated completions."""

import json

import pytest

from core.events import Event
from core.models import OutboxEvent
from orders.models import Variant
from payments.models import Payment, Refund, SandboxMethod, SavedPaymentMethod
from payments.subscribers import forget_deleted_method
from subscriptions import services
from subscriptions.models import Invoice, Subscription, Toybox
from tests.factories import UserFactory
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory, born_months_ago
from tests.subscriptions.helpers import batch, client_for, completed, sandbox_pay, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def family():
    parent = UserFactory()
    return (
        parent,
        ChildFactory(customer=parent, birth_date=born_months_ago(30), interests=["music"]),
        ChildFactory(customer=parent, birth_date=born_months_ago(84), interests=["stem"]),
    )


def test_one_batch_payment_pays_two_subscriptions_priced_by_the_server(family):
    parent, mia, leo = family
    client = client_for(parent)
    plan = PlanFactory(price="30.00", age_min_months=12, age_max_months=120)
    first = subscribe(client, mia, plan).json()["id"]
    second = subscribe(client, leo, plan).json()["id"]

    response = batch(client, first, second)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["amount"] == "60.00" and body["purpose"] == "subscription"
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert sorted(a["purpose_id"] for a in body["allocations"]) == numbers
    payment = sandbox_pay(body["id"])
    completed(payment)

    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    assert set(Subscription.objects.values_list("status", flat=True)) == {"active"}
    assert Toybox.objects.filter(status="building").count() == 2
    method = SavedPaymentMethod.objects.get(customer=parent)  # the card kept for renewals
    assert method.gateway == "sandbox" and "4242" in method.label
    types = list(OutboxEvent.objects.order_by("seq").values_list("type", flat=True))
    assert types.count("invoice.paid") == 2 and types.count("subscription.activated") == 2
    assert "payment_method.saved" in types


def test_a_batch_with_a_subscription_not_yours_or_without_an_open_invoice_is_refused_whole(family):
    parent, mia, leo = family
    client = client_for(parent)
    plan = PlanFactory()
    mine = subscribe(client, mia, plan).json()["id"]
    stranger = ChildFactory()
    theirs = subscribe(client_for(stranger.customer), stranger, plan).json()["id"]

    refused = batch(client, mine, theirs, key="b1")
    assert refused.status_code == 422 and refused.json()["code"] == "item_not_found"
    assert refused.json()["extra"]["item_id"] == theirs

    completed(sandbox_pay(batch(client, mine, key="b2").json()["id"]))
    other = subscribe(client, leo, plan).json()["id"]
    no_invoice = batch(client, other, mine, key="b3")
    assert no_invoice.status_code == 422 and no_invoice.json()["code"] == "item_not_payable"
    assert Payment.objects.count() == 1  # only the one that paid


def test_a_batch_names_its_items_one_way_only(family):
    parent, mia, _ = family
    client = client_for(parent)
    subscription = subscribe(client, mia, PlanFactory()).json()["id"]
    response = client.post(
        "/api/payments/batch",
        {"subscription_ids": [subscription], "purpose": "order", "item_ids": ["X"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="both",
    )
    assert response.status_code == 400 and "subscription_ids" in response.json()["extra"]["fields"]


def test_the_same_completion_five_times_makes_one_toybox_and_reserves_stock_once(family):
    parent, mia, _ = family
    toys = [ToyFactory(age_min_months=12, age_max_months=48, stock_on_hand=5) for _ in range(4)]
    client = client_for(parent)
    subscription = subscribe(client, mia, PlanFactory(toys_per_box=3)).json()["id"]
    payment = sandbox_pay(batch(client, subscription).json()["id"])

    for _ in range(5):
        completed(payment)
        for toybox in Toybox.objects.all():
            services.toybox_build(toybox_id=toybox.pk)

    toybox = Toybox.objects.get()
    assert toybox.status == "ready" and toybox.items.count() == 3
    assert (
        sum(Variant.objects.filter(pk__in=[t.pk for t in toys]).values_list("stock_reserved", flat=True)) == 3
    )
    assert OutboxEvent.objects.filter(type="toybox.created").count() == 1
    assert OutboxEvent.objects.filter(type="invoice.paid").count() == 1


def test_money_for_a_subscription_cancelled_meanwhile_is_refunded(family):
    parent, mia, _ = family
    client = client_for(parent)
    subscription = subscribe(client, mia, PlanFactory()).json()["id"]
    payment = sandbox_pay(batch(client, subscription).json()["id"])
    # Cancelled (its invoice void) after the customer paid, before payment.completed arrived.
    Invoice.objects.update(status="void")
    Subscription.objects.update(status="cancelled")

    completed(payment)

    assert not Toybox.objects.exists()
    allocation = payment.allocations.get()
    assert allocation.outcome == "refused" and "void" in allocation.outcome_note
    assert Refund.objects.get(payment=payment).amount == payment.amount


def test_customers_list_and_delete_their_saved_methods_only(family):
    parent, mia, _ = family
    client = client_for(parent)
    completed(sandbox_pay(batch(client, subscribe(client, mia, PlanFactory()).json()["id"]).json()["id"]))
    methods = client.get("/api/payment-methods").json()["results"]
    assert len(methods) == 1 and methods[0]["gateway"] == "sandbox"
    assert set(methods[0]) == {"id", "gateway", "label", "created_at", "last_used_at"}  # no token
    stranger = client_for(UserFactory())
    assert stranger.get("/api/payment-methods").json()["results"] == []
    assert stranger.delete(f"/api/payment-methods/{methods[0]['id']}").status_code == 404
    assert client.delete(f"/api/payment-methods/{methods[0]['id']}").status_code == 204
    assert client.get("/api/payment-methods").json()["results"] == []  # never charged again
    deleted = OutboxEvent.objects.get(type="payment_method.deleted")
    assert "token" not in deleted.data and "sbxm_" not in json.dumps(deleted.data)

    # payments' subscriber of that event has the gateway forget it, then removes the row.
    forget_deleted_method(Event.from_envelope(deleted.envelope))
    assert not SavedPaymentMethod.objects.exists()
    assert SandboxMethod.objects.get().forgotten
    assert client.get(f"/api/payment-methods/{methods[0]['id']}").status_code == 405
