"""The webhook inbox keeps bodies that are not text (`raw_body`), says what proves each webhook
(`proof`: its signature, or the gateway's API confirming an unsigned notice), what it claimed
(`claimed_status`) and how often the API was asked about it (`checks`).

Safe to run while the previous release serves webhooks: the new columns have database
defaults (the old code's INSERT, which names none of them, still works) and the unique index
on (gateway, event_id) is unchanged. Existing rows: refused ones get proof `none`; accepted
YooKassa notices, which were taken without a signature, `confirmed`.
"""

from django.db import migrations, models


def set_proof_of_existing_rows(apps, schema_editor):
    WebhookEvent = apps.get_model("payments", "WebhookEvent")
    WebhookEvent.objects.filter(signature_valid=False).update(proof="none")
    WebhookEvent.objects.filter(signature_valid=True, gateway="yookassa").update(proof="confirmed")


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_allocations"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookevent",
            name="checks",
            field=models.PositiveSmallIntegerField(
                db_default=0, default=0, help_text="Answers of the gateway's API about it"
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="claimed_status",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="What the webhook says happened (never applied as such)",
                max_length=30,
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="proof",
            field=models.CharField(
                choices=[
                    ("none", "refused: not authenticated or not readable"),
                    ("signature", "signed by the gateway"),
                    ("unconfirmed", "unsigned: waiting for the gateway's API to confirm it"),
                    ("confirmed", "unsigned: the gateway's API confirmed it"),
                    ("repeated", "unsigned: confirmed, but the same event was confirmed before"),
                    ("contradicted", "unsigned: the gateway's API did not confirm it"),
                ],
                db_default="signature",
                default="signature",
                max_length=12,
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="raw_body",
            field=models.BinaryField(
                blank=True, help_text="The bytes as received, when `body` cannot hold them exactly", null=True
            ),
        ),
        migrations.AlterField(
            model_name="webhookevent",
            name="signature_valid",
            field=models.BooleanField(
                help_text="Proven (signed, or confirmed by the gateway's API): it holds its event id"
            ),
        ),
        migrations.RunPython(set_proof_of_existing_rows, migrations.RunPython.noop),
    ]
