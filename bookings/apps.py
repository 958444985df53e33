from django.apps import AppConfig


class BookingsConfig(AppConfig):
    name = "bookings"

    def ready(self) -> None:
        from bookings.purposes import BookingPurpose
        from core import events
        from payments import purposes

        purposes.register(BookingPurpose())

        # Published by beat before each confirmed booking, for notifications.
        events.register_event_type("booking.reminder", source="bookings")
