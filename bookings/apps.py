from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"

    def ready(self) -> None:
        from core import events

        # Published by beat before each confirmed booking, for notifications.
        events.register_event_type("booking.reminder", source="bookings")
