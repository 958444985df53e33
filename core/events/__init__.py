"""The event backbone: a transactional outbox, a relay to RabbitMQ, and subscribers run by the workers.

    from core import events

    with transaction.atomic():
        payment.save(...)
        events.publish("payment.completed", {"payment_id": payment.public_id, ...})

    @events.subscriber("payment.completed", queue="bookings")
    def booking_confirm_on_payment(event: events.Event) -> None: ...

See docs/events.md.
"""

from core.events.outbox import EventDataError, EventError, publish
from core.events.registry import Event, subscriber
from core.events.types import EVENT_TYPES, register_event_type

__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventDataError",
    "EventError",
    "publish",
    "register_event_type",
    "subscriber",
]
