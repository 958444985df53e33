"""Stock moves. Each locks the variants' rows (in primary-key order, so concurrent checkouts
of overlapping carts cannot deadlock) and runs in the caller's transaction.

    reserve:  reserved += q          (checkout; refused if on hand - reserved < q)
    sell:     reserved -= q, on hand -= q   (payment)
    release:  reserved -= q          (cancellation, expiry)
    restock:  on hand += q           (full refund of an order not fulfilled)

Every move says so with `product.updated` (the catalogue shows stock) and, when a variant's
available stock falls under its threshold, `stock.low`.
"""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation
from orders.catalogue import catalogue_changed
from orders.models import Variant


def _locked(quantities: dict[int, int]) -> list[Variant]:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock moves run inside the caller's transaction")
    return list(
        Variant.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(pk__in=quantities)
        .order_by("pk")
    )


def _apply(variants: list[Variant], quantities: dict[int, int], *, reserved: int, on_hand: int) -> None:
    """Add reserved * q and on_hand * q to each (locked) variant; publish what the move changed.

    The catalogue shows what can be sold (on hand minus reserved): a sale takes both down by
    the same amount, shows nothing new, and neither publishes `product.updated` nor empties
    the catalogue cache."""
    now = timezone.now()
    before = {variant.pk: variant.stock_available for variant in variants}
    for variant in variants:
        q = quantities[variant.pk]
        variant.stock_reserved += reserved * q
        variant.stock_on_hand += on_hand * q
        variant.updated_at = now
    # One UPDATE for all of them (the rows are locked already).
    Variant.objects.bulk_update(variants, ["stock_reserved", "stock_on_hand", "updated_at"])
    for variant in variants:
        stock_low_check(variant, available_before=before[variant.pk])
    shown = {v.product_id for v in variants if v.stock_available != before[v.pk]}
    if shown:
        catalogue_changed(product_ids=shown, reason="stock")


def stock_low_check(variant: Variant, *, available_before: int) -> None:
    """Publish `stock.low` if this change took the variant's available stock under its threshold."""
    after = variant.stock_available
    if after < variant.low_stock_threshold <= available_before:
        events.publish(
            "stock.low",
            {
                "variant_id": variant.pk,
                "sku": variant.sku,
                "product_id": variant.product_id,
                "available": after,
                "threshold": variant.low_stock_threshold,
            },
            aggregate_id=f"variant:{variant.pk}",
        )


def stock_reserve(quantities: dict[int, int]) -> None:
    """Hold `quantities` (variant id -> count) or nothing: a shortfall raises `out_of_stock` (422)."""
    variants = _locked(quantities)
    short = {v.sku: v.stock_available for v in variants if v.stock_available < quantities[v.pk]}
    missing = set(quantities) - {v.pk for v in variants}
    if missing:
        raise BusinessRuleViolation("A variant in the cart no longer exists.", code="unknown_variant")
    if short:
        raise BusinessRuleViolation(
            "Not enough in stock: " + ", ".join(f"{sku} has {n} left" for sku, n in short.items()) + ".",
            code="out_of_stock",
            extra={"available": short},
        )
    _apply(variants, quantities, reserved=1, on_hand=0)


def stock_sell(quantities: dict[int, int]) -> None:
    _apply(_locked(quantities), quantities, reserved=-1, on_hand=-1)


def stock_release(quantities: dict[int, int]) -> None:
    _apply(_locked(quantities), quantities, reserved=-1, on_hand=0)


def stock_restock(quantities: dict[int, int]) -> None:
    _apply(_locked(quantities), quantities, reserved=0, on_hand=1)


def quantities_of(lines: Iterable) -> dict[int, int]:
    """variant id -> total quantity of order lines or cart items."""
    totals: dict[int, int] = {}
    for line in lines:
        totals[line.variant_id] = totals.get(line.variant_id, 0) + line.quantity
    return totals
