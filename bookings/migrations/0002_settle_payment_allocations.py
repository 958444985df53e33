"""Settle the outcome of the allocations payments made for bookings' existing payments.

Before allocations, bookings marked an applied completion with an audit row whose note starts
"payment completed", and refunded money it did not want under the key
`booking:<id>:<payment>:refund` with the reason "booking <id>: <why>" (a cancellation's
refund reads "booking <id> cancelled"). Allocations of payments that never completed, or
whose completion is still on its way, stay `open`, so that completion is applied when it
arrives.
"""

from django.db import migrations
from django.utils import timezone

COMPLETED = ("succeeded", "partially_refunded", "refunded")
NOTE = "settled from the booking's state when allocations were introduced"


def settle(apps, schema_editor):
    Booking = apps.get_model("bookings", "Booking")
    BookingAudit = apps.get_model("bookings", "BookingAudit")
    PaymentAllocation = apps.get_model("payments", "PaymentAllocation")
    Refund = apps.get_model("payments", "Refund")
    allocations = PaymentAllocation.objects.filter(
        purpose="booking", outcome="open", payment__status__in=COMPLETED
    ).select_related("payment")
    now = timezone.now()
    for allocation in allocations.iterator(chunk_size=500):
        payment = allocation.payment
        booking = Booking.objects.filter(public_id=allocation.purpose_id, payment_id=payment.pk).first()
        if booking is None:
            continue
        applied = BookingAudit.objects.filter(
            booking=booking, source="payment", note__startswith="payment completed"
        ).exists()
        if not applied:
            continue
        unwanted = Refund.objects.filter(
            payment=payment,
            idempotency_key=f"booking:{booking.public_id}:{payment.public_id}:refund",
            reason__startswith=f"booking {booking.public_id}: ",
        ).exists()
        PaymentAllocation.objects.filter(pk=allocation.pk).update(
            outcome="refused" if unwanted else "accepted", outcome_note=NOTE, settled_at=now
        )


class Migration(migrations.Migration):
    dependencies = [
        ("bookings", "0001_initial"),
        ("payments", "0002_allocations"),
    ]

    operations = [migrations.RunPython(settle, migrations.RunPython.noop)]
