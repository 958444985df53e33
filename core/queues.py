"""The project's queue topology on RabbitMQ: work queues, each with a dead-letter queue.

  queue <name>            bound to direct exchange <name> with key <name>;
                          x-dead-letter-exchange=dlx, x-dead-letter-routing-key=<name>
  queue <name>.dlq        bound to direct exchange dlx with key <name>

A task that fails for good (its retries spent) is rejected without requeue, so RabbitMQ
moves it to <name>.dlq. config/celery.py builds the Celery app's queues from these; the
event relay and subscribers use them through core without importing the Celery app.

RabbitMQ also dead-letters a message whose per-message TTL runs out, and Celery turns a
task's `expires` (beat gives every periodic task one) into such a TTL. So no task message
carries one (`without_message_ttl`): the worker enforces `expires` itself, acknowledging
and dropping a task that arrives too late, and a .dlq holds only real failures.
"""

from celery import current_app
from kombu import Exchange, Queue

# A constant, not a setting: task routes, subscribers and the relay name these queues in
# code, and config/celery.py reads them while the settings module is still being imported.
QUEUE_NAMES = ("default", "payments", "orders", "bookings", "subscriptions", "notifications", "events")
DEAD_LETTER_EXCHANGE = Exchange("dlx", type="direct", durable=True)


def work_queue(name: str) -> Queue:
    return Queue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": name,
        },
    )


def dead_letter_queue(name: str) -> Queue:
    return Queue(f"{name}.dlq", DEAD_LETTER_EXCHANGE, routing_key=name, durable=True)


def declare_topology() -> None:
    """Declare every work queue, its dead-letter queue and the exchanges (idempotent)."""
    if current_app.conf.broker_url.startswith("filesystem"):
        return
    with current_app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in QUEUE_NAMES:
            work_queue(name)(channel).declare()
            dead_letter_queue(name)(channel).declare()


def without_message_ttl(properties: dict | None = None, **kwargs) -> None:
    """before_task_publish: drop the message TTL Celery derives from `expires`; keep `expires`.

    The task's `expires` header stays, and the worker discards an expired task (acknowledged,
    logged as "Discarding revoked task"). A TTL would make RabbitMQ dead-letter it instead:
    every restart of the broker or the workers left an expired `core.events.sweep` on
    events.dlq.
    """
    if properties is not None:
        properties.pop("expiration", None)
