from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"

    def ready(self) -> None:
        from bookings.event_schemas import SCHEMAS
        from bookings.purposes import BookingPurpose
        from core import events
        from payments import purposes

        purposes.register(BookingPurpose())
        for event_type, schema in SCHEMAS.items():
            events.register_event_type(event_type, source="bookings", schema=schema)
