"""Database helpers the ORM lacks."""

import time
from functools import lru_cache
from typing import Any

import psycopg
from django.db import connection, models


def insert_unless_exists(model: type[models.Model], values: dict[str, Any], *, conflict: str) -> bool:
    """INSERT one row in one statement; False, and nothing written, if it conflicts.

    `conflict` is the ON CONFLICT target matching a unique constraint, e.g.
    "(event_id, subscriber)" or "(gateway, event_id) WHERE signature_valid" for a partial
    one. Values are prepared by their model fields, as the ORM would (UUIDs, JSON, datetimes
    on PostgreSQL and SQLite alike). A concurrent insert of the same key waits for the other
    transaction: if it commits, this one finds the row.

    On PostgreSQL the statement goes through a plain psycopg cursor, which binds parameters
    on the server, instead of Django's cursor, which merges them into the SQL text on the
    client: this runs once per webhook and once per subscriber delivery, and that saves about
    a fifth of its CPU (0.28 ms instead of 0.33-0.36 ms here; docs/benchmarks.md). Errors
    are still Django's (OperationalError, IntegrityError, ...), and the connection is still
    marked for a health check after one; what is lost is Django's query logging and
    execute_wrappers for this one statement.
    """
    sql, fields = _insert_statement(model, tuple(values), conflict, connection.vendor)
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1


def insert_many_unless_exist(
    model: type[models.Model], rows: list[dict[str, Any]], *, conflict: str, returning: str
) -> set[Any]:
    """INSERT several rows in one statement, skipping those that conflict; the `returning`
    column's values of the rows written. Same rules as insert_unless_exists (one concurrent
    insert of a key waits for the other's transaction); the rows share their columns."""
    if not rows:
        return set()
    names = tuple(rows[0])
    sql, fields = _insert_statement(model, names, conflict, connection.vendor)
    head, values = sql.split(" VALUES ", 1)
    placeholders, tail = values.split(" ON CONFLICT ", 1)
    column = model._meta.get_field(returning)
    sql = (
        f"{head} VALUES {', '.join([placeholders] * len(rows))} ON CONFLICT {tail} "
        f"RETURNING {connection.ops.quote_name(column.column)}"
    )
    params = [f.get_db_prep_save(row[f.name], connection) for row in rows for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {column.to_python(value) for (value,) in cursor.fetchall()}


@lru_cache(maxsize=64)
def _insert_statement(
    model: type[models.Model], names: tuple[str, ...], conflict: str, vendor: str
) -> tuple[str, list[models.Field]]:
    """The statement and its fields, once per model, columns, conflict target and vendor (quoting)."""
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(names))}) ON CONFLICT {conflict} DO NOTHING"
    )
    return sql, fields


# Django's CONN_HEALTH_CHECKS costs a SELECT 1 round trip at the start of every request or task
# (close_old_connections marks each connection unchecked). A connection that served the
# previous request or task less than this long ago, without an error, is not checked again:
# under load that saves a round trip per unit of work; an idle connection is still checked.
RECENT_USE_SECONDS = 1.0


def connections_mark_used() -> None:
    """After a request or task, once close_old_connections has run."""
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            conn.fulfil_last_used = now


def connections_trust_recent() -> None:
    """Before a request or task: skip the health check of connections used a moment ago."""
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        recent = now - getattr(conn, "fulfil_last_used", float("-inf")) < RECENT_USE_SECONDS
        if recent and conn.connection is not None and not conn.errors_occurred:
            conn.health_check_done = True
