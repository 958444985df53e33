"""A partial index for the webhook sweep: accepted webhooks not processed yet, by age.

Built CONCURRENTLY on PostgreSQL, so webhooks keep being stored meanwhile (hence a migration
of its own that is not atomic: CREATE INDEX CONCURRENTLY cannot run in a transaction).
"""

from django.db import migrations, models

UNPROCESSED = models.Index(
    fields=["received_at"],
    condition=models.Q(processed_at__isnull=True) & (models.Q(signature_valid=True) | models.Q(proof="unconfirmed")),
    name="webhook_unprocessed",
)


def create_unprocessed_index(apps, schema_editor):
    model = apps.get_model("payments", "WebhookEvent")
    if schema_editor.connection.vendor == "postgresql":
        sql = str(UNPROCESSED.create_sql(model, schema_editor))
        schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1))
    else:
        schema_editor.add_index(model, UNPROCESSED)


def drop_unprocessed_index(apps, schema_editor):
    model = apps.get_model("payments", "WebhookEvent")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {UNPROCESSED.name}")
    else:
        schema_editor.remove_index(model, UNPROCESSED)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0003_webhook_proof_and_raw_body"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="webhookevent", index=UNPROCESSED)],
            database_operations=[migrations.RunPython(create_unprocessed_index, drop_unprocessed_index)],
        ),
    ]
