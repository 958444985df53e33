"""The project's periodic tasks, declared in code (settings.PERIODIC_TASKS names this list).

`manage.py setup_periodic_tasks` installs them into django-celery-beat's tables: it creates
what is missing and never overwrites a schedule staff have changed in the admin (use
`--reset` to put the declared schedules back). Each is named for what it does, as staff see
it in the admin; `former_names` are the names earlier releases gave it (the task's path),
which the command renames. Every periodic task is idempotent and expires
before its next run, so a late or doubled tick does no harm. The worker drops an expired run;
it never reaches a dead-letter queue (core/queues.py, `without_message_ttl`).
"""

from django.conf import settings

from core.periodic import PeriodicTaskSpec
from core.services import BEAT_HEARTBEAT

PERIODIC_TASKS: list[PeriodicTaskSpec] = [
    PeriodicTaskSpec(
        name="Publish waiting outbox events (sweep)",
        task="core.events.sweep",
        former_names=("core.events.sweep",),
        every_seconds=settings.EVENTS_SWEEP_SECONDS,
        description="Publishes outbox events that no commit kick delivered (e.g. while RabbitMQ was down).",
    ),
    PeriodicTaskSpec(
        name="Delete old events, processed markers and resolved dead letters",
        task="core.events.prune",
        former_names=("core.events.prune",),
        every_seconds=3600,
        description="Deletes published events, processed markers and resolved dead letters past retention.",
    ),
    PeriodicTaskSpec(
        name="Forget old Idempotency-Keys",
        task="core.idempotency.prune",
        former_names=("core.idempotency.prune",),
        every_seconds=3600,
        description="Deletes Idempotency-Key records older than IDEMPOTENCY_RETENTION_HOURS.",
    ),
    PeriodicTaskSpec(
        name="Re-verify stale payments and send lost refunds (reconciliation)",
        task="payments.reconcile",
        former_names=("payments.reconcile",),
        every_seconds=300,
        description="Re-verifies payments pending too long with their gateway; sends refunds no task sent.",
    ),
    PeriodicTaskSpec(
        name="Dispatch stranded payment webhooks (sweep)",
        task="payments.webhooks_sweep",
        former_names=("payments.webhooks_sweep",),
        every_seconds=settings.PAYMENT_WEBHOOK_SWEEP_SECONDS,
        description="Dispatches stored webhooks no task took (RabbitMQ was down...) or whose task was lost.",
    ),
    PeriodicTaskSpec(
        name="Expire overdue payments",
        task="payments.expire_overdue",
        former_names=("payments.expire_overdue",),
        every_seconds=60,
        description="Expires payments past their deadline, after one last look at the gateway.",
    ),
    PeriodicTaskSpec(
        name="Expire unpaid orders and release their stock",
        task="orders.expire_overdue",
        former_names=("orders.expire_overdue",),
        every_seconds=60,
        description="Expires orders unpaid past their deadline and releases their stock.",
    ),
    PeriodicTaskSpec(
        name="Heartbeat: beat to broker to worker",
        task="core.heartbeat",
        former_names=("core.heartbeat",),
        every_seconds=30,
        args=[BEAT_HEARTBEAT],
        description="Proves beat, broker and worker are alive (see Core > Heartbeats).",
    ),
    PeriodicTaskSpec(
        name="Expire unpaid booking holds",
        task="bookings.expire_holds",
        former_names=("bookings.expire_holds",),
        every_seconds=60,
        description="Expires unpaid booking holds past their deadline (booking.expired), freeing the slots.",
    ),
    PeriodicTaskSpec(
        name="Remind customers of their bookings",
        task="bookings.send_reminders",
        former_names=("bookings.send_reminders",),
        every_seconds=300,
        description="Publishes booking.reminder once per confirmed booking about to start.",
    ),
    PeriodicTaskSpec(
        name="Renew due subscriptions and retry failed charges",
        task="subscriptions.renew_due",
        former_names=("subscriptions.renew_due",),
        every_seconds=settings.SUBSCRIPTION_RENEWAL_EVERY_SECONDS,
        description="Renews due subscriptions and charges invoices due for another attempt (dunning).",
    ),
    PeriodicTaskSpec(
        name="Build stuck toyboxes again (sweep)",
        task="subscriptions.toyboxes_sweep",
        former_names=("subscriptions.toyboxes_sweep",),
        every_seconds=300,
        description="Builds again the toyboxes whose build task was lost.",
    ),
    PeriodicTaskSpec(
        name="Send stranded notifications (sweep)",
        task="notifications.sweep",
        former_names=("notifications.sweep",),
        every_seconds=settings.NOTIFICATIONS_SWEEP_SECONDS,
        description="Sends again the messages a lost task or a dead sender left, and those quiet hours held.",
    ),
]
