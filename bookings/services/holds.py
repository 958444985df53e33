"""Holding a slot: checking the requested time, pricing it and holding it as pending_payment."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from bookings.availability import STEP, covered, on_grid
from bookings.models import Booking, BookingAudit, Resource, Service
from bookings.purposes import PURPOSE
from bookings.selectors import holding_bookings, resource_opening_intervals
from bookings.services.beat import _expire
from bookings.services.common import (
    SlotTaken,
    _audit,
    _invalid,
    _is_overlap_violation,
    _lock_resource,
    _money,
    booking_event_data,
)
from core import events
from core.errors import BusinessRuleViolation
from payments import policy


def _aware(value: datetime, resource: Resource, field: str) -> datetime:
    """An aware instant; a naive time is the resource's local wall time (and must exist there)."""
    try:
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        local = value.replace(tzinfo=resource.tz)
        if local.astimezone(UTC).astimezone(resource.tz).replace(tzinfo=None) != value:
            raise _invalid(
                field, f"{value:%Y-%m-%d %H:%M} does not exist in {resource.timezone} (clocks skip it)."
            )
        return local.astimezone(UTC)
    except OverflowError:  # the calendar's ends (year 1, year 9999) have no instant here
        raise _invalid(field, f"{value.isoformat()} is out of range.") from None


def booking_price(*, resource: Resource, service: Service | None, minutes: int) -> Decimal:
    """The total: the service's price, or the hourly price for the booked minutes."""
    if service is not None:
        return _money(service.price, service.currency)
    return _money(resource.price_per_hour * minutes / 60, resource.currency)


def booking_deposit(*, total: Decimal, currency: str) -> Decimal:
    return _money(total * settings.BOOKING_DEPOSIT_PERCENT / 100, currency)


def booking_check_time(
    *,
    resource: Resource,
    service: Service | None,
    starts_at: datetime,
    ends_at: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """Validate a requested time for the resource; return it as aware UTC instants.

    Malformed requests (off the grid, end not after start, wrong length) are 400s naming the
    field; requests that are well formed but not bookable (past, too far ahead, outside the
    opening hours) are 422s.
    """
    starts_at = _aware(starts_at, resource, "start")
    if not on_grid(starts_at):
        raise _invalid("start", f"must be on the {STEP.seconds // 60}-minute grid (:00, :15, :30, :45).")
    if service is not None:
        try:
            expected = starts_at + timedelta(minutes=service.duration_minutes)
        except OverflowError:
            raise _invalid("start", f"{service.name} would end after the calendar does.") from None
        if ends_at is not None and _aware(ends_at, resource, "end") != expected:
            raise _invalid("end", f"{service.name} takes {service.duration_minutes} minutes; omit end.")
        ends_at = expected
    elif ends_at is None:
        raise _invalid("end", "is required when no service is booked.")
    else:
        ends_at = _aware(ends_at, resource, "end")
    if ends_at <= starts_at:
        raise _invalid("end", "must be after start.")
    if not on_grid(ends_at):
        raise _invalid("end", f"must be on the {STEP.seconds // 60}-minute grid (:00, :15, :30, :45).")
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    if service is None:
        if minutes < resource.min_booking_minutes:
            raise _invalid(
                "end", f"a booking of {resource.name} lasts at least {resource.min_booking_minutes} minutes."
            )
        if minutes > resource.max_booking_minutes:
            raise _invalid(
                "end", f"a booking of {resource.name} lasts at most {resource.max_booking_minutes} minutes."
            )
    if starts_at < now:
        raise BusinessRuleViolation("The start is in the past.", code="in_the_past")
    last_date = now.astimezone(resource.tz).date() + timedelta(days=settings.BOOKING_MAX_DAYS_AHEAD)
    if starts_at.astimezone(resource.tz).date() > last_date:
        raise BusinessRuleViolation(
            f"Bookings open {settings.BOOKING_MAX_DAYS_AHEAD} days ahead, until {last_date}.",
            code="too_far_ahead",
        )
    if not covered(
        starts_at, ends_at, resource_opening_intervals(resource=resource, start=starts_at, end=ends_at)
    ):
        raise BusinessRuleViolation(
            f"{resource.name} is not open for all of that time ({resource.timezone}).",
            code="outside_opening_hours",
        )
    return starts_at, ends_at


def booking_hold(
    *,
    customer_id: int,
    resource_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
    service_id: int | None = None,
    payment_kind: str = Booking.PaymentKind.DEPOSIT,
    notes: str = "",
) -> Booking:
    """Hold the slot as `pending_payment` with its payment (deposit or full), in one transaction.

    The hold, and the payment's deadline, last BOOKING_HOLD_MINUTES. booking.created is
    published; the caller opens the payment's checkout after the commit.
    """
    resource = Resource.objects.filter(pk=resource_id, active=True).first()
    if resource is None:
        raise _invalid("resource_id", f"no bookable resource with id {resource_id}.", code="unknown_resource")
    service = None
    if service_id is not None:
        service = Service.objects.filter(pk=service_id, active=True, resources=resource).first()
        if service is None:
            raise _invalid("service_id", f"{resource.name} offers no service with id {service_id}.")
    elif resource.price_per_hour is None:
        raise _invalid("service_id", f"{resource.name} is booked for a service: name one.")
    if payment_kind not in Booking.PaymentKind.values:
        raise _invalid("payment_kind", f"must be one of {', '.join(Booking.PaymentKind.values)}.")
    now = timezone.now()
    try:
        starts_at, ends_at = booking_check_time(
            resource=resource, service=service, starts_at=starts_at, ends_at=ends_at, now=now
        )
    except OverflowError:  # a last guard: the API bounds the dates, _aware names the field
        raise _invalid("start", "is out of range.") from None
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    total = booking_price(resource=resource, service=service, minutes=minutes)
    currency = service.currency if service else resource.currency
    due = total
    if payment_kind == Booking.PaymentKind.DEPOSIT:
        due = booking_deposit(total=total, currency=currency)
        if due <= 0 or due >= total:  # a deposit of nothing, or of everything, is a full payment
            payment_kind, due = Booking.PaymentKind.FULL, total

    with transaction.atomic():
        _lock_resource(resource.pk)
        _release_stale_holds(resource_id=resource.pk, start=starts_at, end=ends_at, now=now)
        if holding_bookings(resource_id=resource.pk, start=starts_at, end=ends_at).exists():
            raise SlotTaken(extra={"start": starts_at, "end": ends_at})
        try:
            with transaction.atomic():
                booking = Booking.objects.create(
                    resource=resource,
                    service=service,
                    customer_id=customer_id,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    payment_kind=payment_kind,
                    amount_total=total,
                    amount_due=due,
                    currency=currency,
                    hold_expires_at=now + timedelta(minutes=settings.BOOKING_HOLD_MINUTES),
                    notes=notes,
                )
        except IntegrityError as exc:
            if _is_overlap_violation(exc):  # a concurrent request took it after our check
                raise SlotTaken(extra={"start": starts_at, "end": ends_at}) from exc
            raise
        # Priced by the booking's purpose (its amount_due), due when the hold ends.
        payment = policy.payment_open(customer_id=customer_id, purpose=PURPOSE, item_ids=[booking.public_id])
        booking.payment = payment
        booking.save(update_fields=["payment", "updated_at"])
        _audit(
            booking,
            source=BookingAudit.Source.CUSTOMER,
            from_status="new",
            actor_id=customer_id,
            note=f"held until {booking.hold_expires_at:%Y-%m-%d %H:%M} UTC; {payment_kind} {due} {currency}",
        )
        events.publish("booking.created", booking_event_data(booking, payment_kind=payment_kind))
    return booking


def _release_stale_holds(*, resource_id: int, start: datetime, end: datetime, now: datetime) -> None:
    """Expire holds past their deadline in [start, end) now rather than at beat's next pass.

    A hold locked by someone else (its payment being applied) is skipped: it still counts.
    """
    stale = (
        holding_bookings(resource_id=resource_id, start=start, end=end)
        .filter(status=Booking.Status.PENDING_PAYMENT, hold_expires_at__lt=now)
        .select_related("resource", "payment")
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
    )
    for booking in stale:
        _expire(booking, reason="hold expired")
