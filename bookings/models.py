"""Resources (halls, staff) with weekly hours and exceptions, services, and bookings.

No side effects in save(): bookings.services changes status along bookings.transitions,
writes the audit trail and publishes booking.* events in the same transaction.
"""

import zoneinfo
from datetime import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from bookings.constraints import PostgresExclusionConstraint, TsTzRange
from core.ids import public_id
from core.money import CURRENCY_EXPONENTS, MoneyError, quantize

SLOT_MINUTES = 15
MIDNIGHT = time(0, 0)


def booking_public_id() -> str:
    return public_id("bkg")


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin).") from exc


def validate_on_grid(value: time) -> None:
    if value.minute % SLOT_MINUTES or value.second or value.microsecond:
        raise ValidationError(f"{value:%H:%M:%S} is not on the {SLOT_MINUTES}-minute grid.")


def validate_minutes_on_grid(value: int) -> None:
    if value <= 0 or value % SLOT_MINUTES:
        raise ValidationError(f"{value} is not a positive multiple of {SLOT_MINUTES} minutes.")


def minutes_of_day(value: time, *, closing: bool = False) -> int:
    """Minutes since midnight; a closing time of 00:00 means the end of the day (24:00)."""
    minutes = value.hour * 60 + value.minute
    return 24 * 60 if closing and minutes == 0 else minutes


CURRENCIES = [(code, code) for code in sorted(CURRENCY_EXPONENTS)]


def money_errors(field: str, amount, currency: str) -> dict[str, str]:
    """{field: why} when `amount` has more decimals than `currency` allows (the columns keep 3
    for every currency); nothing for an empty amount or an unknown currency (its own field
    says so)."""
    if amount is None or currency not in CURRENCY_EXPONENTS:
        return {}
    try:
        quantize(amount, currency)
    except MoneyError as exc:
        return {field: str(exc)}
    return {}


class Resource(models.Model):
    """What is booked: a hall (priced per hour) or a staff member (booked for services)."""

    class Kind(models.TextChoices):
        HALL = "hall"
        STAFF = "staff"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.HALL)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, validators=[validate_timezone], help_text="IANA name, e.g. Europe/Berlin"
    )
    currency = models.CharField(max_length=3, choices=CURRENCIES, default="USD")
    price_per_hour = models.DecimalField(
        max_digits=14,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="Halls: the price of an hour (charged per 15 minutes). Staff: empty to book services only.",
    )
    min_booking_minutes = models.PositiveIntegerField(default=60, validators=[validate_minutes_on_grid])
    max_booking_minutes = models.PositiveIntegerField(default=8 * 60, validators=[validate_minutes_on_grid])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_booking_minutes__gte=SLOT_MINUTES)
                & Q(max_booking_minutes__gte=models.F("min_booking_minutes")),
                name="resource_booking_length_range",
            ),
            models.CheckConstraint(
                condition=Q(price_per_hour__isnull=True) | Q(price_per_hour__gt=0),
                name="resource_price_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def clean(self) -> None:
        if self.kind == self.Kind.HALL and self.price_per_hour is None:
            raise ValidationError({"price_per_hour": "A hall needs a price per hour."})
        if errors := money_errors("price_per_hour", self.price_per_hour, self.currency):
            raise ValidationError(errors)


class OpeningHours(models.Model):
    """One opening interval of a weekday, in the resource's local time (several per day allowed)."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="opening_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField(validators=[validate_on_grid])
    closes = models.TimeField(validators=[validate_on_grid], help_text="00:00 means midnight (end of day)")

    class Meta:
        ordering = ["resource", "weekday", "opens"]
        verbose_name_plural = "opening hours"
        constraints = [
            models.CheckConstraint(
                condition=Q(opens__lt=models.F("closes")) | Q(closes=MIDNIGHT),
                name="opening_hours_opens_before_closes",
            ),
            models.CheckConstraint(condition=Q(weekday__lte=6), name="opening_hours_weekday"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"

    def clean(self) -> None:
        if (
            self.opens is not None
            and self.closes is not None
            and minutes_of_day(self.opens) >= minutes_of_day(self.closes, closing=True)
        ):
            raise ValidationError("Opening must be before closing (00:00 closes at midnight).")


class ScheduleException(models.Model):
    """A date whose hours differ from the week's: closed, or open only in the special intervals.

    The rows of one date replace that weekday's opening hours: a closed row closes the whole
    day; otherwise the day is open in the union of the rows' intervals.
    """

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="exceptions")
    date = models.DateField()
    closed = models.BooleanField(default=True)
    opens = models.TimeField(null=True, blank=True, validators=[validate_on_grid])
    closes = models.TimeField(null=True, blank=True, validators=[validate_on_grid])
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["resource", "date", "opens"]
        indexes = [models.Index(fields=["resource", "date"], name="schedule_exception_day")]
        constraints = [
            models.CheckConstraint(
                condition=Q(closed=True)
                | (
                    Q(opens__isnull=False, closes__isnull=False)
                    & (Q(opens__lt=models.F("closes")) | Q(closes=MIDNIGHT))
                ),
                name="schedule_exception_closed_or_hours",
            )
        ]

    def __str__(self) -> str:
        if self.closed:
            return f"{self.date} closed"
        return f"{self.date} {self.opens:%H:%M}-{self.closes:%H:%M}"

    def clean(self) -> None:
        if not self.closed:
            if self.opens is None or self.closes is None:
                raise ValidationError("Special hours need both an opening and a closing time.")
            if minutes_of_day(self.opens) >= minutes_of_day(self.closes, closing=True):
                raise ValidationError("Opening must be before closing (00:00 closes at midnight).")


class Service(models.Model):
    """What an appointment is for (a haircut, a 90-minute shoot): a fixed duration and price."""

    name = models.CharField(max_length=200)
    duration_minutes = models.PositiveIntegerField(validators=[validate_minutes_on_grid])
    price = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, choices=CURRENCIES, default="USD")
    resources = models.ManyToManyField(Resource, related_name="services", help_text="Who or where offers it")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="service_price_positive"),
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=SLOT_MINUTES), name="service_duration_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.duration_minutes} min)"

    def clean(self) -> None:
        if errors := money_errors("price", self.price, self.currency):
            raise ValidationError(errors)


HOLDING_STATUSES = ("pending_payment", "confirmed")


class Booking(models.Model):
    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment"
        CONFIRMED = "confirmed"
        COMPLETED = "completed"
        NO_SHOW = "no_show"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    class PaymentStatus(models.TextChoices):
        UNPAID = "unpaid"
        DEPOSIT_PAID = "deposit_paid"
        PAID = "paid"
        REFUNDED = "refunded"
        FAILED = "failed"

    class PaymentKind(models.TextChoices):
        DEPOSIT = "deposit"
        FULL = "full"

    public_id = models.CharField(max_length=32, unique=True, default=booking_public_id, editable=False)
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="bookings")
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.PROTECT, related_name="bookings"
    )
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings")
    # The booked time is the half-open range [starts_at, ends_at).
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_PAYMENT)
    payment_status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.UNPAID
    )
    payment_kind = models.CharField(max_length=10, choices=PaymentKind.choices)
    amount_total = models.DecimalField(max_digits=14, decimal_places=3)
    amount_due = models.DecimalField(
        max_digits=14, decimal_places=3, help_text="What the payment asks now: the deposit or the total"
    )
    currency = models.CharField(max_length=3)
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="bookings"
    )
    payment_error = models.TextField(blank=True)
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    # The window (hours before the start, BOOKING_REMINDER_HOURS) of the last reminder sent.
    reminder_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    # Set when money and slot disagree (paid after the slot was given away...): staff look.
    needs_attention = models.BooleanField(default=False)
    attention_note = models.TextField(blank=True)
    notes = models.TextField(blank=True, help_text="The customer's note")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="booking_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(amount_due__gt=0) & Q(amount_due__lte=models.F("amount_total")),
                name="booking_amount_due_within_total",
            ),
            PostgresExclusionConstraint(
                name="booking_no_overlap",
                expressions=[
                    ("resource", "="),
                    (TsTzRange("starts_at", "ends_at"), "&&"),
                ],
                condition=Q(status__in=HOLDING_STATUSES),
                violation_error_code="slot_taken",
                violation_error_message="This time is already booked.",
            ),
        ]
        indexes = [
            models.Index(fields=["resource", "starts_at"], name="booking_resource_start"),
            models.Index(fields=["status", "hold_expires_at"], name="booking_status_hold"),
            models.Index(fields=["status", "starts_at"], name="booking_status_start"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.resource} {self.starts_at:%Y-%m-%d %H:%M} {self.status}"

    @property
    def holds_time(self) -> bool:
        return self.status in HOLDING_STATUSES


class BookingAudit(models.Model):
    """Every change of a booking: who, from what, to what, why. Append-only."""

    class Source(models.TextChoices):
        CUSTOMER = "customer"
        STAFF = "staff"
        PAYMENT = "payment"
        SYSTEM = "system"

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="audit")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    from_payment_status = models.CharField(max_length=20, blank=True)
    to_payment_status = models.CharField(max_length=20, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.booking_id} {self.from_status}->{self.to_status} {self.note}"
