"""Payments pay for allocations (purpose, item id, amount, kind); refunds come out of them in
shares.

Each existing payment gets one allocation per id of its former `purpose_ids`, the amount split
evenly in the currency's minor unit (the first ones take the units left over; an id that
would get nothing is left out), each refund becomes shares in the same proportion, and every
allocation starts `open`. The apps whose items were paid settle the outcomes from their own
state in their own migrations (orders 0002, bookings 0002): payments names no app. Reversed,
the allocations become `purpose_ids` again.
"""

from decimal import Decimal

import django.db.models.deletion
from django.db import migrations, models

from core.money import CURRENCY_EXPONENTS


def _split(amount: Decimal, parts: int, currency: str) -> list[Decimal]:
    """`amount` in `parts` shares of whole minor units, as even as can be (the first take the rest)."""
    unit = Decimal(1).scaleb(-CURRENCY_EXPONENTS.get(currency, 2))
    units = int(amount / unit)
    each, rest = divmod(units, parts)
    return [(each + (1 if n < rest else 0)) * unit for n in range(parts)]


def allocations_from_purpose_ids(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    PaymentAllocation = apps.get_model("payments", "PaymentAllocation")
    RefundShare = apps.get_model("payments", "RefundShare")
    for payment in Payment.objects.prefetch_related("refunds").iterator(chunk_size=500):
        ids = [str(i) for i in payment.purpose_ids] or [payment.public_id]
        kind = payment.kind if len(ids) == 1 else "full"
        amounts = _split(payment.amount, len(ids), payment.currency)
        refunded = _split(payment.refunded_amount, len(ids), payment.currency)
        allocations = [
            PaymentAllocation.objects.create(
                payment=payment,
                purpose=payment.purpose,
                purpose_id=item_id,
                amount=amount,
                refunded_amount=min(done, amount),
                kind=kind,
            )
            for item_id, amount, done in zip(ids, amounts, refunded, strict=True)
            if amount > 0
        ]
        for refund in payment.refunds.all():
            shares = _split(refund.amount, len(allocations), payment.currency)
            RefundShare.objects.bulk_create(
                RefundShare(refund=refund, allocation=allocation, amount=share)
                for allocation, share in zip(allocations, shares, strict=True)
                if share > 0
            )


def purpose_ids_from_allocations(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    for payment in Payment.objects.prefetch_related("allocations").iterator(chunk_size=500):
        payment.purpose_ids = [a.purpose_id for a in sorted(payment.allocations.all(), key=lambda a: a.pk)]
        payment.save(update_fields=["purpose_ids"])


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='payment',
            name='purpose',
            field=models.CharField(db_index=True, max_length=40),
        ),
        migrations.AlterField(
            model_name='refund',
            name='idempotency_key',
            field=models.CharField(max_length=255, unique=True),
        ),
        migrations.CreateModel(
            name='PaymentAllocation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('purpose', models.CharField(max_length=40)),
                ('purpose_id', models.CharField(max_length=100)),
                ('amount', models.DecimalField(decimal_places=3, max_digits=14)),
                ('kind', models.CharField(choices=[('full', 'Full'), ('deposit', 'Deposit')], default='full', max_length=10)),
                ('refunded_amount', models.DecimalField(decimal_places=3, default=0, max_digits=14)),
                ('outcome', models.CharField(choices=[('open', 'not settled yet'), ('accepted', 'the item took the money'), ('held', 'held for staff to accept or refund'), ('refused', 'the item could not take it: refunded')], default='open', max_length=10)),
                ('outcome_note', models.TextField(blank=True)),
                ('settled_at', models.DateTimeField(blank=True, null=True)),
                ('payment', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='allocations', to='payments.payment')),
            ],
            options={
                'ordering': ['pk'],
            },
        ),
        migrations.CreateModel(
            name='RefundShare',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('amount', models.DecimalField(decimal_places=3, max_digits=14)),
                ('allocation', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='refund_shares', to='payments.paymentallocation')),
                ('refund', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shares', to='payments.refund')),
            ],
        ),
        migrations.AddIndex(
            model_name='paymentallocation',
            index=models.Index(fields=['purpose', 'purpose_id'], name='allocation_item'),
        ),
        migrations.AddConstraint(
            model_name='paymentallocation',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='allocation_amount_positive'),
        ),
        migrations.AddConstraint(
            model_name='paymentallocation',
            constraint=models.CheckConstraint(condition=models.Q(('refunded_amount__gte', 0), ('refunded_amount__lte', models.F('amount'))), name='allocation_refunds_within_amount'),
        ),
        migrations.AddConstraint(
            model_name='paymentallocation',
            constraint=models.UniqueConstraint(fields=('payment', 'purpose', 'purpose_id'), name='allocation_item_once'),
        ),
        migrations.AddConstraint(
            model_name='refundshare',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='refund_share_positive'),
        ),
        migrations.AddConstraint(
            model_name='refundshare',
            constraint=models.UniqueConstraint(fields=('refund', 'allocation'), name='refund_share_once'),
        ),
        migrations.RunPython(allocations_from_purpose_ids, purpose_ids_from_allocations),
        migrations.RemoveField(
            model_name='payment',
            name='purpose_ids',
        ),
    ]
