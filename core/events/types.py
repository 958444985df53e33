"""The event types the system knows, each with the app that publishes it (the envelope's source)."""

EVENT_TYPES: dict[str, str] = {
    "payment.created": "payments",
    "payment.completed": "payments",
    "payment.failed": "payments",
    "payment.cancelled": "payments",
    "payment.refunded": "payments",
    "payment.flagged": "payments",
    "order.created": "orders",
    "order.paid": "orders",
    "order.cancelled": "orders",
    "order.fulfilled": "orders",
    "order.expired": "orders",
    "order.refunded": "orders",
    "booking.created": "bookings",
    "booking.confirmed": "bookings",
    "booking.cancelled": "bookings",
    "booking.expired": "bookings",
    "payment_method.saved": "payments",
    "payment_method.deleted": "payments",
    "subscription.created": "subscriptions",
    "subscription.activated": "subscriptions",
    "subscription.renewed": "subscriptions",
    "subscription.past_due": "subscriptions",
    "subscription.paused": "subscriptions",
    "subscription.resumed": "subscriptions",
    "subscription.cancelled": "subscriptions",
    "invoice.created": "subscriptions",
    "invoice.paid": "subscriptions",
    "invoice.payment_failed": "subscriptions",
    "toybox.created": "subscriptions",
    "toybox.short": "subscriptions",
    "toybox.shipped": "subscriptions",
    "product.updated": "orders",
    "stock.low": "orders",
    "notification.sent": "notifications",
    "notification.failed": "notifications",
    "dead_letter.recorded": "core",
}


def register_event_type(event_type: str, *, source: str) -> None:
    """Add an event type (an app's own, e.g. a reminder) before anything publishes it."""
    if EVENT_TYPES.get(event_type, source) != source:
        raise ValueError(f"{event_type} is already published by {EVENT_TYPES[event_type]}")
    EVENT_TYPES[event_type] = source
