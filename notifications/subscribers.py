"""Every event a rule listens to becomes messages (notifications.services), on the
`notifications` queue, in the subscriber's transaction with its processed-event row: a
redelivered event writes nothing twice (and the delivery log's unique key says so again)."""

from core import events
from notifications import services
from notifications.rules import event_types


@events.subscriber(*event_types(), queue="notifications", name="notifications.on_event")
def notifications_on_event(event: events.Event) -> None:
    services.notifications_for_event(event)
