"""Building toyboxes: toys for the child's age, interests first, never one the child has had;
short boxes rebuilt once stock arrives; shipping sells the stock; no oversell under concurrency."""

import threading

import pytest
from django.db import connection

from core.errors import BusinessRuleViolation, TransitionNotAllowed
from core.models import OutboxEvent
from orders.models import Variant
from subscriptions import services
from subscriptions.models import Toybox
from tests.subscriptions.factories import ChildFactory, PlanFactory, ToyFactory, born_months_ago
from tests.subscriptions.helpers import client_for, paid_subscription, renewal_paid

pytestmark = pytest.mark.django_db


def boxed(child, plan) -> Toybox:
    subscription = paid_subscription(client_for(child.customer), child, plan)
    toybox = subscription.toyboxes.get()
    return services.toybox_build(toybox_id=toybox.pk)


def skus(toybox: Toybox) -> set[str]:
    return set(toybox.items.values_list("sku", flat=True))


def test_a_box_holds_toys_for_the_childs_age_interests_first():
    child = ChildFactory(birth_date=born_months_ago(30), interests=["music"])
    ToyFactory(sku="BABY", age_min_months=0, age_max_months=12)  # too young a toy
    ToyFactory(sku="TEEN", age_min_months=96, age_max_months=144)  # too old
    ToyFactory(sku="NOSTOCK", stock_on_hand=0)
    ToyFactory(sku="PLAIN-1"), ToyFactory(sku="PLAIN-2")
    ToyFactory(sku="DRUM", tags=["music"]), ToyFactory(sku="XYLO", tags=["music", "wooden"])

    toybox = boxed(child, PlanFactory(toys_per_box=3))

    assert toybox.status == "ready"
    picked = skus(toybox)
    assert {"DRUM", "XYLO"} <= picked and len(picked) == 3
    assert not picked & {"BABY", "TEEN", "NOSTOCK"}
    assert Variant.objects.get(sku="DRUM").stock_reserved == 1
    event = OutboxEvent.objects.get(type="toybox.created")
    assert {"user_id", "payment_id", "child_id", "subscription_id", "toybox_id"} <= set(event.data)
    assert event.data["user_id"] == child.customer_id and event.data["toybox_id"] == toybox.public_id


def test_the_next_box_never_repeats_a_toy():
    child = ChildFactory()
    for n in range(4):
        ToyFactory(sku=f"T{n}")
    plan = PlanFactory(toys_per_box=2)
    subscription = paid_subscription(client_for(child.customer), child, plan)
    first = services.toybox_build(toybox_id=subscription.toyboxes.get().pk)

    renewal_paid(subscription)
    second = services.toybox_build(toybox_id=subscription.toyboxes.exclude(pk=first.pk).get().pk)

    assert second.status == "ready" and len(skus(second)) == 2
    assert not skus(first) & skus(second)


def test_a_short_box_is_published_and_rebuilt_once_stock_arrives():
    child = ChildFactory()
    scarce = ToyFactory(sku="ONLY", stock_on_hand=1)
    toybox = boxed(child, PlanFactory(toys_per_box=2))

    assert toybox.status == "short" and skus(toybox) == {"ONLY"}
    short = OutboxEvent.objects.get(type="toybox.short")
    assert short.data["missing"] == 1
    with pytest.raises(TransitionNotAllowed):
        services.toybox_ship(toybox_id=toybox.pk, tracking_number="TRK1")  # not ready

    ToyFactory(sku="ARRIVED")
    rebuilt = services.toybox_rebuild(toybox_id=toybox.pk)
    assert rebuilt.status == "ready" and skus(rebuilt) == {"ONLY", "ARRIVED"}
    assert OutboxEvent.objects.filter(type="toybox.created").count() == 1
    scarce.refresh_from_db()
    assert scarce.stock_reserved == 1  # reserved once, not again on the rebuild


def test_shipping_needs_a_tracking_number_and_sells_the_stock():
    child = ChildFactory()
    toy = ToyFactory(stock_on_hand=5)
    toybox = boxed(child, PlanFactory(toys_per_box=1))
    with pytest.raises(BusinessRuleViolation) as refused:
        services.toybox_ship(toybox_id=toybox.pk, tracking_number=" ")
    assert refused.value.code == "tracking_required"

    shipped = services.toybox_ship(toybox_id=toybox.pk, tracking_number="TRK-42")
    assert shipped.status == "shipped"
    toy.refresh_from_db()
    assert (toy.stock_on_hand, toy.stock_reserved) == (4, 0)
    assert OutboxEvent.objects.get(type="toybox.shipped").data["tracking_number"] == "TRK-42"
    assert services.toybox_deliver(toybox_id=toybox.pk).status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_concurrent_builds_never_take_more_than_is_in_stock():
    toy = ToyFactory(sku="LAST3", stock_on_hand=3)
    plan = PlanFactory(toys_per_box=1)
    boxes = []
    for _ in range(8):
        child = ChildFactory()
        boxes.append(paid_subscription(client_for(child.customer), child, plan).toyboxes.get().pk)
    barrier = threading.Barrier(len(boxes))
    errors = []

    def build(pk):
        try:
            barrier.wait()
            services.toybox_build(toybox_id=pk)
        except Exception as exc:  # noqa: BLE001 - any error fails the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=build, args=[pk]) for pk in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    toy.refresh_from_db()
    assert toy.stock_reserved == 3
    assert Toybox.objects.filter(status="ready").count() == 3
    assert Toybox.objects.filter(status="short").count() == 5
