"""The CSV export of bookings (django-import-export; export only).

As the payments export (core.resources): amounts are plain decimals with the currency's digits
("40.00"), `created_at` is UTC in ISO 8601; the booked time is ISO 8601 on the resource's wall
clock, with its offset ("2026-12-10T10:00:00+01:00"), and the resource's time zone is given.
"""

from datetime import datetime

from import_export import fields, resources

from bookings.models import Booking
from core.resources import AmountField, TimeField


class BookingResource(resources.ModelResource):
    booking_id = fields.Field(attribute="public_id", column_name="booking_id")
    # Not `resource`: the export form has a field of that name (which resource class to use).
    resource_name = fields.Field(attribute="resource__name", column_name="resource")
    starts_at_local = fields.Field(column_name="starts_at_local")
    ends_at_local = fields.Field(column_name="ends_at_local")
    timezone = fields.Field(attribute="resource__timezone", column_name="timezone")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    amount_total = AmountField("amount_total")
    amount_due = AmountField("amount_due")  # what its online payment asks: the deposit or the total
    payment_id = fields.Field(attribute="payment__public_id", column_name="payment_id")
    created_at = TimeField("created_at")

    class Meta:
        model = Booking
        name = "Bookings"
        fields = [
            "booking_id",
            "resource_name",
            "starts_at_local",
            "ends_at_local",
            "timezone",
            "customer_email",
            "status",
            "payment_status",
            "payment_kind",
            "amount_total",
            "amount_due",
            "currency",
            "payment_id",
            "created_at",
        ]
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("resource", "customer", "payment")

    def _local(self, moment: datetime, booking: Booking) -> str:
        return moment.astimezone(booking.resource.tz).isoformat(timespec="seconds")

    def dehydrate_starts_at_local(self, booking: Booking) -> str:
        return self._local(booking.starts_at, booking)

    def dehydrate_ends_at_local(self, booking: Booking) -> str:
        return self._local(booking.ends_at, booking)
