"""The data of the events bookings publishes (booking.*), as it travels.

Registered from BookingsConfig.ready(); built by bookings.services.common.booking_event_data.
"""

from datetime import datetime

from pydantic import Field

from core.events.schemas import Currency, EventData, Money, optional


class BookingData(EventData):
    booking_id: str = Field(examples=["bkg_..."])
    resource_id: int
    service_id: int | None
    customer_id: int
    starts_at: datetime = Field(description="Start of the booked time, [starts_at, ends_at)")
    ends_at: datetime
    timezone: str = Field(description="The resource's IANA time zone", examples=["Europe/Berlin"])
    status: str
    payment_status: str
    payment_id: str | None
    amount_total: Money
    amount_due: Money = Field(description="What the booking's payment asks for: a deposit or the total")
    currency: Currency


class BookingCreated(BookingData):
    payment_kind: str = Field(description="deposit or full")


class BookingConfirmed(BookingData):
    by: str = Field(description="payment or staff")
    late: bool = optional("With by=payment: whether the payment came after the hold had expired")


class BookingCancelled(BookingData):
    reason: str
    refund: bool = Field(description="Whether a refund is on its way")
    by: str = Field(description="customer, staff, payment or system")


class BookingExpired(BookingData):
    reason: str


class BookingReminder(BookingData):
    hours_before: int = Field(description="The reminder's lead time, in hours")


SCHEMAS: dict[str, type[EventData]] = {
    "booking.created": BookingCreated,
    "booking.confirmed": BookingConfirmed,
    "booking.cancelled": BookingCancelled,
    "booking.expired": BookingExpired,
    # Published by beat before each confirmed booking, for notifications.
    "booking.reminder": BookingReminder,
}
