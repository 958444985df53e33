from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bookings.models import Booking, OpeningHours, Resource, Service
from core.drf import utc_offset_problem
from core.errors import BusinessRuleViolation
from core.money import MoneyError, exponent
from core.serializers import MoneyField, WallTimeField

ID_LIMITS = {"min_value": 1, "max_value": 2**63 - 1}  # a bigint primary key


def price_text(amount: Decimal | None, currency: str) -> str | None:
    """A stored price as text in its currency's minor unit, rounded as it is charged (half up).

    The models refuse extra decimals (clean()), but a row written some other way must not
    break a listing: it is shown as it would be charged, never a 500.
    """
    if amount is None:
        return None
    try:
        return str(amount.quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP))
    except MoneyError:  # a currency the payments do not know: show the amount as stored
        return str(amount)


def _utc_today() -> date:
    return timezone.now().date()


def _last_bookable_date() -> date:
    """BOOKING_MAX_DAYS_AHEAD and a day from today (UTC), the latest local date anywhere."""
    try:
        return _utc_today() + timedelta(days=settings.BOOKING_MAX_DAYS_AHEAD + 1)
    except OverflowError:
        return date.max


@extend_schema_field(OpenApiTypes.DATETIME)
class LocalDateTimeField(serializers.Field):
    """An instant shown in the booked resource's time zone (ISO 8601 with its offset)."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return (getattr(instance, self.source), instance.resource.tz)

    def to_representation(self, value) -> str | None:
        moment, tz = value
        return moment.astimezone(tz).isoformat() if moment else None


@extend_schema_field(
    {
        "type": "string",
        "description": "ISO 8601 date and time; without a UTC offset, the resource's local time",
        "example": "2026-12-05T10:00",
    }
)
class WallOrAwareDateTimeField(serializers.Field):
    """ISO 8601. With an offset (or Z) it is that instant; without one, the resource's local time."""

    def to_internal_value(self, data) -> datetime:
        if not isinstance(data, str):
            raise serializers.ValidationError("Expected an ISO 8601 date and time, e.g. 2026-12-01T10:00.")
        try:
            moment = datetime.fromisoformat(data.strip().replace("Z", "+00:00"))
        except ValueError:
            raise serializers.ValidationError(
                "Expected an ISO 8601 date and time, e.g. 2026-12-01T10:00 or 2026-12-01T10:00+01:00."
            ) from None
        problem = utc_offset_problem(moment)
        if problem:
            raise serializers.ValidationError(problem)
        return moment

    def to_representation(self, value) -> str:
        return value.isoformat()


class OpeningHoursSerializer(serializers.ModelSerializer):
    opens = WallTimeField(help_text="Local time in the resource's time zone")
    closes = WallTimeField(help_text="Local time; 00:00:00 means midnight (the end of the day)")

    class Meta:
        model = OpeningHours
        fields = ["weekday", "opens", "closes"]


class ServiceSerializer(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()

    class Meta:
        model = Service
        fields = ["id", "name", "duration_minutes", "price", "currency"]

    @extend_schema_field(OpenApiTypes.STR)
    def get_price(self, service: Service) -> str | None:
        return price_text(service.price, service.currency)


class ResourceSerializer(serializers.ModelSerializer):
    price_per_hour = serializers.SerializerMethodField()
    opening_hours = OpeningHoursSerializer(many=True, read_only=True)
    services = serializers.SerializerMethodField()

    class Meta:
        model = Resource
        fields = [
            "id",
            "kind",
            "name",
            "slug",
            "description",
            "timezone",
            "currency",
            "price_per_hour",
            "min_booking_minutes",
            "max_booking_minutes",
            "opening_hours",
            "services",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="null: booked for services only"))
    def get_price_per_hour(self, resource: Resource) -> str | None:
        return price_text(resource.price_per_hour, resource.currency)

    @extend_schema_field(ServiceSerializer(many=True))
    def get_services(self, resource: Resource) -> list[dict]:
        active = [s for s in resource.services.all() if s.active]
        return ServiceSerializer(active, many=True).data


class AvailabilityQuerySerializer(serializers.Serializer):
    hall_id = serializers.IntegerField(
        required=False, **ID_LIMITS, help_text="The resource (hall or staff member)"
    )
    resource_id = serializers.IntegerField(required=False, **ID_LIMITS, help_text="Same as hall_id")
    service_id = serializers.IntegerField(
        required=False, **ID_LIMITS, help_text="Start times where this service's whole duration fits"
    )
    start_date = serializers.DateField()
    end_date = serializers.DateField()

    def validate(self, attrs):
        if "hall_id" in attrs:
            attrs["resource_id"] = attrs.pop("hall_id")
        elif "resource_id" not in attrs:
            raise serializers.ValidationError({"hall_id": ["This field is required."]})
        return validate_window(attrs)


def validate_window(attrs: dict) -> dict:
    """The window's order, length and place, checked on dates before any time arithmetic.

    It must overlap the dates that can be booked (from yesterday, UTC, which is today or
    later somewhere, to BOOKING_MAX_DAYS_AHEAD and a day): other windows have nothing to show,
    and the calendar's ends (year 1, year 9999) cannot be turned into instants.
    """
    start, end = attrs["start_date"], attrs["end_date"]
    if end < start:
        raise serializers.ValidationError({"end_date": ["must not be before start_date."]})
    days = (end - start).days + 1
    if days > settings.BOOKING_AVAILABILITY_MAX_DAYS:
        raise serializers.ValidationError(
            {"end_date": [f"at most {settings.BOOKING_AVAILABILITY_MAX_DAYS} days per query ({days} asked)."]}
        )
    today = _utc_today()
    if end < today - timedelta(days=1):
        raise serializers.ValidationError({"end_date": ["must not be in the past."]})
    last = _last_bookable_date()
    if start > last:
        raise serializers.ValidationError(
            {
                "start_date": [
                    f"bookings open {settings.BOOKING_MAX_DAYS_AHEAD} days ahead, until about {last}."
                ]
            }
        )
    return attrs


class IntervalSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class DaySerializer(serializers.Serializer):
    date = serializers.DateField()
    free = IntervalSerializer(many=True)
    starts = serializers.ListField(child=serializers.DateTimeField())


class AvailabilitySerializer(serializers.Serializer):
    """The response of GET /api/bookings/availability (built by the view, documented here)."""

    resource_id = serializers.IntegerField()
    service_id = serializers.IntegerField(allow_null=True)
    timezone = serializers.CharField()
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    slot_minutes = serializers.IntegerField()
    duration_minutes = serializers.IntegerField()
    days = DaySerializer(many=True)


class BookingCreateSerializer(serializers.Serializer):
    resource_id = serializers.IntegerField(required=False, **ID_LIMITS, help_text="The hall or staff member")
    hall_id = serializers.IntegerField(required=False, **ID_LIMITS, help_text="Same as resource_id")
    service_id = serializers.IntegerField(required=False, allow_null=True, **ID_LIMITS)
    start = WallOrAwareDateTimeField()
    end = WallOrAwareDateTimeField(required=False, allow_null=True, help_text="Omit when booking a service")
    payment_kind = serializers.ChoiceField(
        choices=Booking.PaymentKind.choices,
        default=Booking.PaymentKind.DEPOSIT,
        help_text="Pay a deposit (BOOKING_DEPOSIT_PERCENT of the total) or everything now",
    )
    return_url = serializers.URLField(required=False, allow_blank=True, default="")
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, attrs):
        if "hall_id" in attrs:
            attrs["resource_id"] = attrs.pop("hall_id")
        elif "resource_id" not in attrs:
            raise serializers.ValidationError({"resource_id": ["This field is required."]})
        return validate_booking_time(attrs)


# How far an end may lie after its start before the dates alone refuse it (the resource's
# longest booking is checked later, by the service).
END_AFTER_START_DAYS = 366


def validate_booking_time(attrs: dict) -> dict:
    """Refuse, on their dates alone, starts and ends that cannot be booked.

    Before any time arithmetic: a local time at the calendar's ends (year 1, year 9999) has no
    instant. A start more than a day before today (UTC) or after the last bookable date gets
    the service's own answers (422 in_the_past, too_far_ahead); an end before its start or
    more than a year after it is a 400.
    """
    start, end = attrs["start"], attrs.get("end")
    today = _utc_today()
    if start.date() < today - timedelta(days=1):
        raise BusinessRuleViolation("The start is in the past.", code="in_the_past")
    if start.date() > _last_bookable_date():
        raise BusinessRuleViolation(
            f"Bookings open {settings.BOOKING_MAX_DAYS_AHEAD} days ahead.", code="too_far_ahead"
        )
    if end is not None:
        if end.date() < start.date() - timedelta(days=1):
            raise serializers.ValidationError({"end": ["must be after start."]})
        if (end.date() - start.date()).days > END_AFTER_START_DAYS:
            raise serializers.ValidationError(
                {"end": [f"must be within {END_AFTER_START_DAYS} days of start."]}
            )
    return attrs


class BookingPaymentSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    status = serializers.CharField()
    amount = MoneyField()
    currency = serializers.CharField()
    kind = serializers.CharField()
    gateway = serializers.CharField()
    checkout_url = serializers.CharField()
    deadline = serializers.DateTimeField()


class BookingSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    resource_id = serializers.IntegerField()
    resource_name = serializers.CharField(source="resource.name")
    timezone = serializers.CharField(source="resource.timezone")
    service_id = serializers.IntegerField(allow_null=True)
    customer_id = serializers.IntegerField()
    start = LocalDateTimeField(source="starts_at")
    end = LocalDateTimeField(source="ends_at")
    amount_total = MoneyField()
    amount_due = MoneyField()
    payment = BookingPaymentSerializer(allow_null=True)

    class Meta:
        model = Booking
        fields = [
            "id",
            "resource_id",
            "resource_name",
            "timezone",
            "service_id",
            "customer_id",
            "start",
            "end",
            "status",
            "payment_status",
            "payment_kind",
            "amount_total",
            "amount_due",
            "currency",
            "payment",
            "payment_error",
            "hold_expires_at",
            "notes",
            "created_at",
            "updated_at",
        ]


class BookingCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    refund = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Staff only: refund (true) or not (false) whatever the policy says",
    )


class BookingConfirmSerializer(serializers.Serializer):
    paid_in_cash = serializers.BooleanField(
        default=False, help_text="The customer paid (the rest) at the desk"
    )
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class BookingNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
