"""Database helpers the ORM lacks."""

from typing import Any

from django.db import connection, models


def insert_unless_exists(model: type[models.Model], values: dict[str, Any], *, conflict: str) -> bool:
    """INSERT one row in one statement; False, and nothing written, if it conflicts.

    `conflict` is the ON CONFLICT target matching a unique constraint, e.g.
    "(event_id, subscriber)" or "(gateway, event_id) WHERE signature_valid" for a partial
    one. Values are prepared by their model fields, as the ORM would (UUIDs, JSON, datetimes
    on PostgreSQL and SQLite alike). A concurrent insert of the same key waits for the other
    transaction: if it commits, this one finds the row.
    """
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "  # noqa: S608 - names from the model
            f"VALUES ({', '.join(['%s'] * len(params))}) ON CONFLICT {conflict} DO NOTHING RETURNING 1",
            params,
        )
        return cursor.fetchone() is not None
