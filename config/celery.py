"""The Celery app: JSON only, late acks, durable queues each with a dead-letter queue.

The queue topology (work queues, their dead-letter queues, the `dlx` exchange) is declared
in core/queues.py. A task that fails for good (its retries spent) is rejected without
requeue (task_acks_on_failure_or_timeout=False), so RabbitMQ moves it to <name>.dlq. A task
that expired is not a failure: its message carries no RabbitMQ TTL (which would dead-letter
it), and the worker drops it (core.queues.without_message_ttl).

With no CELERY_BROKER_URL the embedded default is kombu's filesystem transport: real
worker and beat processes, messages in files under var/broker (no dead-lettering there).
"""

import os

from celery import Celery, signals

from core.queues import (
    DEAD_LETTER_EXCHANGE,
    QUEUE_NAMES,
    dead_letter_queue,
    declare_topology,
    without_message_ttl,
    work_queue,
)

# The topology's names stay importable from here (bench/ and tests use config.celery).
__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "QUEUE_NAMES",
    "app",
    "dead_letter_queue",
    "declare_topology",
    "work_queue",
]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

# Housekeeping that runs every minute or more often: it sends no task events (Flower would show
# little else) and its routine "received"/"succeeded" lines are DEBUG (core.logging.QuietTasksFilter).
# Results are ignored by every task (task_ignore_result).
QUIET_TASKS = (
    "core.heartbeat",
    "core.events.sweep",
    "payments.webhooks_sweep",
    "payments.expire_overdue",
    "orders.expire_overdue",
    "bookings.expire_holds",
    "notifications.sweep",
)

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")


app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_acks_on_failure_or_timeout=False,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    worker_hijack_root_logger=False,
    # Task events cost a confirmed publish each (a third of the throughput); Flower turns
    # them on in the workers when it runs (its enable_events), so they are off otherwise.
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=2,
    task_publish_retry_policy={
        "max_retries": 3,
        "interval_start": 0.2,
        "interval_step": 0.5,
        "interval_max": 2,
    },
    task_queues=[work_queue(name) for name in QUEUE_NAMES],
    task_default_queue="default",
    task_default_exchange="default",
    task_default_routing_key="default",
    task_create_missing_queues=False,
    # Task names are "<app>.<what>": each app's tasks go to its own queue.
    task_routes=[
        {
            f"{name}.*": {"queue": name}
            for name in ("payments", "orders", "bookings", "subscriptions", "notifications")
        }
        | {"core.events.*": {"queue": "events"}}
    ],
    task_annotations={name: {"send_events": False} for name in QUIET_TASKS},
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    timezone="UTC",
)
app.autodiscover_tasks()
# With EVENTS_CONSUMER on, workers consume in-project subscribers' events themselves (a step of
# their consumer; it does nothing when the setting is off). Named, not imported: it is loaded
# when a worker starts, after Django's apps.
app.steps["consumer"].add("core.events.consumer:EventsConsumer")


@signals.setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Keep Django's LOGGING (JSON lines) in worker and beat instead of Celery's own."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.worker_init.connect
def _declare_on_worker_start(**kwargs) -> None:
    declare_topology()


# `expires` is enforced by the worker, never by a RabbitMQ TTL that dead-letters (core/queues.py).
signals.before_task_publish.connect(without_message_ttl, weak=False, dispatch_uid="core.without_message_ttl")


@signals.task_postrun.connect
def _drop_broken_db_connections(**kwargs) -> None:
    """As Django does after each request: close a connection that errored or outlived CONN_MAX_AGE.

    Celery's Django fixup reuses connections for CELERY_DB_REUSE_MAX tasks without checking
    them, so after a PostgreSQL restart a worker would otherwise keep failing on a dead one.
    """
    from django.db import close_old_connections

    from core.db import connections_mark_used

    close_old_connections()
    connections_mark_used()


@signals.task_prerun.connect
def _check_idle_db_connections(**kwargs) -> None:
    """A connection the previous task used a moment ago is not health-checked again."""
    from core.db import connections_trust_recent

    connections_trust_recent()
