"""Toyboxes: one per paid period, filled from the catalogue's stock by age and interests.

`toybox_open` creates the box (status building) in the transaction that marks its invoice
paid and publishes invoice.paid; the one-to-one with the invoice makes it exactly one per paid
period, however often payment.completed arrives. That event, kept in the outbox with the box,
is what starts the build (subscriptions.subscribers): a worker killed or a broker refusing
right after the commit delays it, never loses it. `toybox_build`, in one transaction, picks toys
suited to the child's age at the period's start, preferring the child's interests, never a
toy (product) the child has had before, and reserves their stock through orders' stock
service (row locks: no oversell under concurrency). A crash rolls all of it back and the
event's redelivery (or the sweep) builds it again. Stock is sold when the box ships.
"""

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation
from orders import stock
from orders.models import Variant
from subscriptions.models import Invoice, Subscription, Toybox, ToyboxItem
from subscriptions.services.common import toybox_data
from subscriptions.transitions import TOYBOX

logger = logging.getLogger("subscriptions.services")
BUILD_TASK = "subscriptions.toybox_build"
CANDIDATES = 400  # the most suitable toys in stock looked at per box
RESERVE_TRIES = 3  # other boxes may take the last of a toy between the pick and the reservation


def toybox_open(*, invoice: Invoice, subscription: Subscription, payment_id: str) -> Toybox:
    """The paid period's box, built once invoice.paid (published in this transaction) arrives."""
    # The caller holds the invoice's lock and has just marked it paid: no box can exist for it
    # yet, unless that was rolled back and retried, and then this finds it.
    toybox = Toybox.objects.filter(invoice=invoice).first() or Toybox.objects.create(
        invoice=invoice,
        subscription=subscription,
        child_id=subscription.child_id,
        customer_id=subscription.customer_id,
        period_start=invoice.period_start,
        toys_wanted=subscription.plan.toys_per_box,
        payment_id=payment_id,
    )
    return toybox


def _lock(toybox_id: int) -> Toybox:
    return (
        Toybox.objects.select_for_update(of=("self",))
        .select_related("child", "subscription", "invoice")
        .get(pk=toybox_id)
    )


def _candidates(toybox: Toybox, exclude_products: set[int], exclude_variants: set[int]) -> list[tuple]:
    """(variant id, product id, sku, name) of toys in stock for the child's age, best first."""
    age = toybox.child.age_months(timezone.localdate(toybox.period_start))
    rows = (
        Variant.objects.filter(
            is_active=True,
            product__is_active=True,
            age_min_months__lte=age,
            age_max_months__gte=age,
            stock_on_hand__gt=F("stock_reserved"),
        )
        .exclude(Q(product_id__in=exclude_products) | Q(pk__in=exclude_variants))
        .order_by("pk")
        .values_list("pk", "product_id", "sku", "product__name", "name", "tags")[:CANDIDATES]
    )
    interests = set(toybox.child.interests)
    scored = sorted(rows, key=lambda row: (-len(interests & set(row[5] or ())), row[0]))
    return [
        (pk, product, sku, f"{product_name} {name}".strip())
        for pk, product, sku, product_name, name, _ in scored
    ]


def _had_before(toybox: Toybox) -> set[int]:
    return set(
        ToyboxItem.objects.filter(toybox__child_id=toybox.child_id).values_list("product_id", flat=True)
    )


def _fill(toybox: Toybox) -> int:
    """Add toys until the box has its count or stock runs out; how many are still missing."""
    missing = toybox.toys_wanted - toybox.items.count()
    refused: set[int] = set()
    for _ in range(RESERVE_TRIES):
        if missing <= 0:
            break
        picked, products = [], _had_before(toybox)
        for pk, product, sku, name in _candidates(toybox, products, refused):
            if product not in products and len(picked) < missing:
                picked.append((pk, product, sku, name))
                products.add(product)
        if not picked:
            break
        try:
            with transaction.atomic():  # a savepoint: a refused reservation leaves nothing behind
                stock.stock_reserve({pk: 1 for pk, *_ in picked})
        except BusinessRuleViolation as exc:
            if exc.code != "out_of_stock":
                raise
            short_skus = set((exc.extra or {}).get("available", {}))
            refused |= {pk for pk, _, sku, _ in picked if sku in short_skus}
            continue
        ToyboxItem.objects.bulk_create(
            ToyboxItem(toybox=toybox, variant_id=pk, product_id=product, sku=sku, name=name[:330])
            for pk, product, sku, name in picked
        )
        missing -= len(picked)
    return missing


def toybox_build(*, toybox_id: int) -> Toybox:
    """Fill a box being built, or a short one again: ready (toybox.created) or short
    (toybox.short). A box already built is left as it is."""
    with transaction.atomic():
        toybox = _lock(toybox_id)
        if toybox.status not in (Toybox.Status.BUILDING, Toybox.Status.SHORT):
            return toybox
        missing = _fill(toybox)
        target = Toybox.Status.SHORT if missing > 0 else Toybox.Status.READY
        TOYBOX.check(toybox.status, target)
        toybox.status, toybox.built_at = target, timezone.now()
        toybox.note = f"short of {missing} toys in stock for this child" if missing else ""
        toybox.save(update_fields=["status", "built_at", "note", "updated_at"])
        if target == Toybox.Status.READY:
            events.publish("toybox.created", toybox_data(toybox))
        else:
            events.publish("toybox.short", toybox_data(toybox, missing=missing))
    return toybox


def toybox_rebuild(*, toybox_id: int) -> Toybox:
    """Staff: try a short box again once stock has arrived."""
    toybox = Toybox.objects.get(pk=toybox_id)
    if toybox.status != Toybox.Status.SHORT:
        raise BusinessRuleViolation(
            f"Only a short box can be rebuilt; this one is {toybox.status}.", code="not_short"
        )
    return toybox_build(toybox_id=toybox_id)


def _quantities(toybox: Toybox) -> dict[int, int]:
    return stock.quantities_of(_Line(item.variant_id) for item in toybox.items.all())


class _Line:
    quantity = 1

    def __init__(self, variant_id: int):
        self.variant_id = variant_id


def toybox_ship(*, toybox_id: int, tracking_number: str) -> Toybox:
    """Staff: the box left the warehouse (toybox.shipped); its stock is sold."""
    tracking_number = tracking_number.strip()
    if not tracking_number:
        raise BusinessRuleViolation(
            "A tracking number is needed to mark a box shipped.", code="tracking_required"
        )
    with transaction.atomic():
        toybox = _lock(toybox_id)
        if toybox.status == Toybox.Status.SHIPPED and toybox.tracking_number == tracking_number:
            return toybox
        TOYBOX.check(toybox.status, Toybox.Status.SHIPPED)
        stock.stock_sell(_quantities(toybox))
        toybox.status, toybox.tracking_number, toybox.shipped_at = (
            Toybox.Status.SHIPPED,
            tracking_number,
            timezone.now(),
        )
        toybox.save(update_fields=["status", "tracking_number", "shipped_at", "updated_at"])
        events.publish("toybox.shipped", toybox_data(toybox, tracking_number=tracking_number))
    return toybox


def toybox_deliver(*, toybox_id: int) -> Toybox:
    with transaction.atomic():
        toybox = _lock(toybox_id)
        if toybox.status == Toybox.Status.DELIVERED:
            return toybox
        TOYBOX.check(toybox.status, Toybox.Status.DELIVERED)
        toybox.status, toybox.delivered_at = Toybox.Status.DELIVERED, timezone.now()
        toybox.save(update_fields=["status", "delivered_at", "updated_at"])
    return toybox


def toyboxes_sweep(*, now: datetime | None = None, older_than: timedelta = timedelta(minutes=2)) -> int:
    """Send the build task for boxes still building after a while: their invoice.paid delivery
    failed for good (dead-lettered after its retries, e.g. a database away for longer)."""
    before = (now or timezone.now()) - older_than
    ids = list(
        Toybox.objects.filter(status=Toybox.Status.BUILDING, updated_at__lt=before)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:500]
    )
    for pk in ids:
        current_app.send_task(BUILD_TASK, args=[pk])
    return len(ids)
