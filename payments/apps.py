from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from core import events, metrics
        from payments.event_schemas import SCHEMAS
        from payments.metrics import collect

        metrics.register("payments", collect)
        for event_type, schema in SCHEMAS.items():
            events.register_event_type(event_type, source="payments", schema=schema)
