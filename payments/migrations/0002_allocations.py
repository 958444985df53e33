"""Payments pay for allocations (purpose, item id, amount); refunds come out of them in shares.

Existing payments get one allocation per id of their former `purpose_ids` (the amount split
evenly, the rest on the last), settled as accepted if the payment succeeded; each existing
refund becomes shares in proportion to the allocations.
"""

from decimal import ROUND_DOWN, Decimal

import django.db.models.deletion
from django.db import migrations, models


def _split(amount, parts):
    unit = Decimal("0.001")
    each = (amount / parts).quantize(unit, rounding=ROUND_DOWN)
    return [each] * (parts - 1) + [amount - each * (parts - 1)]


def allocations_from_purpose_ids(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    PaymentAllocation = apps.get_model("payments", "PaymentAllocation")
    RefundShare = apps.get_model("payments", "RefundShare")
    settled = ("succeeded", "partially_refunded", "refunded")
    for payment in Payment.objects.prefetch_related("refunds").iterator(chunk_size=500):
        ids = [str(i) for i in payment.purpose_ids] or [payment.public_id]
        allocations = [
            PaymentAllocation.objects.create(
                payment=payment,
                purpose=payment.purpose,
                purpose_id=item_id,
                amount=amount,
                refunded_amount=refunded,
                outcome="accepted" if payment.status in settled else "open",
            )
            for item_id, amount, refunded in zip(
                ids, _split(payment.amount, len(ids)), _split(payment.refunded_amount, len(ids)), strict=True
            )
        ]
        for refund in payment.refunds.all():
            for allocation, share in zip(allocations, _split(refund.amount, len(ids)), strict=True):
                if share > 0:
                    RefundShare.objects.create(refund=refund, allocation=allocation, amount=share)


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
        migrations.CreateModel(
            name='PaymentAllocation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('purpose', models.CharField(max_length=40)),
                ('purpose_id', models.CharField(max_length=100)),
                ('amount', models.DecimalField(decimal_places=3, max_digits=14)),
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
        migrations.RunPython(allocations_from_purpose_ids, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='payment',
            name='purpose_ids',
        ),
    ]
