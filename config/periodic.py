"""The project's periodic tasks, declared in code (settings.PERIODIC_TASKS names this list).

`manage.py setup_periodic_tasks` installs them into django-celery-beat's tables: it creates
what is missing and never overwrites a schedule staff have changed in the admin (use
`--reset` to put the declared schedules back). Every periodic task is idempotent and expires
before its next run, so a late or doubled tick does no harm. The worker drops an expired run;
it never reaches a dead-letter queue (core/queues.py, `without_message_ttl`).
"""

from django.conf import settings

from core.periodic import PeriodicTaskSpec

PERIODIC_TASKS: list[PeriodicTaskSpec] = [
    PeriodicTaskSpec(
        name="core.events.sweep",
        task="core.events.sweep",
        every_seconds=settings.EVENTS_SWEEP_SECONDS,
        description="Publishes outbox events that no commit kick delivered (e.g. while RabbitMQ was down).",
    ),
    PeriodicTaskSpec(
        name="core.events.prune",
        task="core.events.prune",
        every_seconds=3600,
        description="Deletes published events, processed markers and resolved dead letters past retention.",
    ),
    PeriodicTaskSpec(
        name="core.idempotency.prune",
        task="core.idempotency.prune",
        every_seconds=3600,
        description="Deletes Idempotency-Key records older than IDEMPOTENCY_RETENTION_HOURS.",
    ),
    PeriodicTaskSpec(
        name="payments.reconcile",
        task="payments.reconcile",
        every_seconds=300,
        description="Re-verifies payments pending too long with their gateway; sends refunds no task sent.",
    ),
    PeriodicTaskSpec(
        name="payments.webhooks_sweep",
        task="payments.webhooks_sweep",
        every_seconds=settings.PAYMENT_WEBHOOK_SWEEP_SECONDS,
        description="Dispatches stored webhooks no task took (RabbitMQ was down...) or whose task was lost.",
    ),
    PeriodicTaskSpec(
        name="payments.expire_overdue",
        task="payments.expire_overdue",
        every_seconds=60,
        description="Expires payments past their deadline, after one last look at the gateway.",
    ),
    PeriodicTaskSpec(
        name="orders.expire_overdue",
        task="orders.expire_overdue",
        every_seconds=60,
        description="Expires orders unpaid past their deadline and releases their stock.",
    ),
    PeriodicTaskSpec(
        name="core.heartbeat",
        task="core.heartbeat",
        every_seconds=30,
        args=["beat"],
        description="Proves beat, broker and worker are alive (see Core > Heartbeats).",
    ),
    PeriodicTaskSpec(
        name="bookings.expire_holds",
        task="bookings.expire_holds",
        every_seconds=60,
        description="Expires unpaid booking holds past their deadline (booking.expired), freeing the slots.",
    ),
    PeriodicTaskSpec(
        name="bookings.send_reminders",
        task="bookings.send_reminders",
        every_seconds=300,
        description="Publishes booking.reminder once per confirmed booking about to start.",
    ),
    PeriodicTaskSpec(
        name="subscriptions.renew_due",
        task="subscriptions.renew_due",
        every_seconds=settings.SUBSCRIPTION_RENEWAL_EVERY_SECONDS,
        description="Renews due subscriptions and charges invoices due for another attempt (dunning).",
    ),
    PeriodicTaskSpec(
        name="subscriptions.toyboxes_sweep",
        task="subscriptions.toyboxes_sweep",
        every_seconds=300,
        description="Builds again the toyboxes whose build task was lost.",
    ),
    PeriodicTaskSpec(
        name="notifications.sweep",
        task="notifications.sweep",
        every_seconds=settings.NOTIFICATIONS_SWEEP_SECONDS,
        description="Sends again the messages a lost task or a dead sender left, and those quiet hours held.",
    ),
]
