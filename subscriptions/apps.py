from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from core import events
        from payments import purposes
        from subscriptions.event_schemas import SCHEMAS
        from subscriptions.purposes import SubscriptionPurpose

        purposes.register(SubscriptionPurpose())
        for event_type, schema in SCHEMAS.items():
            events.register_event_type(event_type, source="subscriptions", schema=schema)
