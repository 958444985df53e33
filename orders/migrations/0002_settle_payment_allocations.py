"""Settle the outcome of the allocations payments made for orders' existing payments.

Before allocations, orders recorded what a completed payment did only in its own state: an
order paid by it took the money, an expired order holding stock for it held it, and money it
refused was refunded under the key `order:<number>:<payment>`. Allocations of payments that
never completed, or whose completion is still on its way, stay `open`, so that completion is
applied when it arrives.
"""

from django.db import migrations
from django.utils import timezone

COMPLETED = ("succeeded", "partially_refunded", "refunded")
NOTE = "settled from the order's state when allocations were introduced"


def outcome(order, payment, refused: bool) -> str | None:
    if refused:
        return "refused"
    if order is None or order.payment_id != payment.pk:
        return None
    if order.status in ("paid", "fulfilled", "refunded"):
        return "accepted"
    if order.status == "expired" and order.stock_state == "reserved" and order.needs_attention:
        return "held"
    return None


def settle(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    PaymentAllocation = apps.get_model("payments", "PaymentAllocation")
    Refund = apps.get_model("payments", "Refund")
    allocations = PaymentAllocation.objects.filter(
        purpose="order", outcome="open", payment__status__in=COMPLETED
    ).select_related("payment")
    now = timezone.now()
    for allocation in allocations.iterator(chunk_size=500):
        payment = allocation.payment
        order = Order.objects.filter(number=allocation.purpose_id).first()
        refused = Refund.objects.filter(
            payment=payment, idempotency_key=f"order:{allocation.purpose_id}:{payment.public_id}"
        ).exists()
        settled = outcome(order, payment, refused)
        if settled:
            PaymentAllocation.objects.filter(pk=allocation.pk).update(
                outcome=settled, outcome_note=NOTE, settled_at=now
            )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("payments", "0002_allocations"),
    ]

    operations = [migrations.RunPython(settle, migrations.RunPython.noop)]
