from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from core import events
        from orders.event_schemas import SCHEMAS
        from orders.purposes import OrderPurpose
        from payments import purposes

        purposes.register(OrderPurpose())
        for event_type, schema in SCHEMAS.items():
            events.register_event_type(event_type, source="orders", schema=schema)
