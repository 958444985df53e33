"""booking_hold: what it validates (nothing held on bad input), what it creates, and its price."""

from datetime import UTC, datetime, timedelta
from datetime import timezone as timezone_of
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from bookings import services
from bookings.models import Booking, BookingAudit, ScheduleException
from core.errors import BusinessRuleViolation, InvalidInput
from core.models import OutboxEvent
from payments.models import Payment
from tests.bookings.conftest import local
from tests.factories import ServiceFactory, StaffResourceFactory

pytestmark = pytest.mark.django_db


def hold(hall, customer, start, end=None, **kwargs):
    return services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=start, ends_at=end, **kwargs
    )


def test_a_hold_creates_the_booking_its_deposit_payment_audit_and_event(hall, customer):
    start = local(3, 10)
    booking = hold(hall, customer, start, start + timedelta(hours=2), notes="birthday shoot")

    assert booking.status == "pending_payment" and booking.payment_status == "unpaid"
    assert (booking.amount_total, booking.amount_due, booking.currency) == (
        Decimal("80.00"),
        Decimal("24.00"),
        "EUR",
    )
    payment = Payment.objects.get()
    assert booking.payment == payment
    assert (payment.amount, payment.kind, payment.purpose) == (Decimal("24.000"), "deposit", "booking")
    assert list(payment.allocations.values_list("purpose_id", flat=True)) == [booking.public_id]
    assert booking.hold_expires_at == payment.deadline
    assert timedelta(minutes=14) < booking.hold_expires_at - timezone.now() <= timedelta(minutes=15)
    assert BookingAudit.objects.get(booking=booking).to_status == "pending_payment"
    created = OutboxEvent.objects.get(type="booking.created")
    assert created.data["booking_id"] == booking.public_id
    assert created.data["starts_at"] == start.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert created.data["amount_due"] == "24.00"


def test_full_payment_asks_for_the_total(hall, customer):
    start = local(3, 10)
    booking = hold(hall, customer, start, start + timedelta(minutes=90), payment_kind="full")
    assert (booking.payment_kind, booking.amount_total, booking.amount_due) == (
        "full",
        Decimal("60.00"),
        Decimal("60.00"),
    )
    assert booking.payment.kind == "full"


@override_settings(BOOKING_DEPOSIT_PERCENT=100)
def test_a_deposit_of_everything_is_a_full_payment(hall, customer):
    start = local(3, 10)
    booking = hold(hall, customer, start, start + timedelta(hours=1))
    assert (booking.payment_kind, booking.amount_due) == ("full", Decimal("40.00"))


def test_a_naive_time_is_the_resources_wall_time(hall, customer):
    start = local(3, 10)
    booking = hold(
        hall, customer, start.replace(tzinfo=None), (start + timedelta(hours=1)).replace(tzinfo=None)
    )
    assert booking.starts_at == start


def test_a_service_fixes_the_length_and_the_price(customer):
    stylist = StaffResourceFactory()
    haircut = ServiceFactory(resources=[stylist], duration_minutes=45, price="30.00")
    start = local(3, 11)

    booking = hold(stylist, customer, start, service_id=haircut.pk, payment_kind="full")

    assert booking.ends_at == start + timedelta(minutes=45)
    assert (booking.amount_total, booking.service) == (Decimal("30.00"), haircut)


@pytest.mark.parametrize(
    ("start_days", "start_hour", "start_minute", "length_minutes", "field"),
    [
        (3, 10, 10, 60, "start"),  # off the 15-minute grid
        (3, 10, 0, 50, "end"),  # end off the grid
        (3, 10, 0, 0, "end"),  # end not after start
        (3, 10, 0, -60, "end"),  # end before start
        (3, 10, 0, 30, "end"),  # shorter than the hall's minimum (60)
        (3, 10, 0, 9 * 60, "end"),  # longer than allowed (480)
    ],
)
def test_malformed_times_are_400s_naming_the_field_and_hold_nothing(
    hall, customer, start_days, start_hour, start_minute, length_minutes, field
):
    start = local(start_days, start_hour, start_minute)
    with pytest.raises(InvalidInput) as caught:
        hold(hall, customer, start, start + timedelta(minutes=length_minutes))
    assert caught.value.status_code == 400
    assert field in caught.value.extra["fields"]
    assert not Booking.objects.exists() and not Payment.objects.exists()


@pytest.mark.parametrize(
    ("start", "length_hours", "code"),
    [
        (lambda: local(3, 7), 1, "outside_opening_hours"),  # before opening
        (lambda: local(3, 20), 2, "outside_opening_hours"),  # runs past closing
        (lambda: local(-1, 10), 1, "in_the_past"),
        (lambda: local(120, 10), 1, "too_far_ahead"),
    ],
)
def test_unbookable_times_are_422s_and_hold_nothing(hall, customer, start, length_hours, code):
    begin = start()
    with pytest.raises(BusinessRuleViolation) as caught:
        hold(hall, customer, begin, begin + timedelta(hours=length_hours))
    assert (caught.value.status_code, caught.value.code) == (422, code)
    assert not Booking.objects.exists() and not Payment.objects.exists()


def test_a_closed_day_and_special_hours_are_respected(hall, customer):
    closed_day = local(4, 10)
    ScheduleException.objects.create(resource=hall, date=closed_day.date(), closed=True)
    special = local(5, 10)
    ScheduleException.objects.create(
        resource=hall, date=special.date(), closed=False, opens="12:00", closes="14:00"
    )

    with pytest.raises(BusinessRuleViolation, match="not open"):
        hold(hall, customer, closed_day, closed_day + timedelta(hours=1))
    with pytest.raises(BusinessRuleViolation, match="not open"):
        hold(hall, customer, special, special + timedelta(hours=1))  # 10:00: closed that day
    booking = hold(hall, customer, local(5, 12), local(5, 14))
    assert booking.status == "pending_payment"


def test_unknown_or_inactive_resource_and_unknown_service_are_400s(hall, customer):
    start = local(3, 10)
    with pytest.raises(InvalidInput) as caught:
        services.booking_hold(
            customer_id=customer.pk, resource_id=999999, starts_at=start, ends_at=start + timedelta(hours=1)
        )
    assert caught.value.code == "unknown_resource" and "resource_id" in caught.value.extra["fields"]
    hall.active = False
    hall.save()
    with pytest.raises(InvalidInput):
        hold(hall, customer, start, start + timedelta(hours=1))
    stylist = StaffResourceFactory()
    other = ServiceFactory()  # offered by nobody
    with pytest.raises(InvalidInput) as caught:
        hold(stylist, customer, start, service_id=other.pk)
    assert "service_id" in caught.value.extra["fields"]
    with pytest.raises(InvalidInput) as caught:
        hold(stylist, customer, start, start + timedelta(hours=1))  # a stylist is booked for a service
    assert "service_id" in caught.value.extra["fields"]
    assert not Booking.objects.exists()


def test_an_overlapping_hold_is_slot_taken_and_adjacent_ones_are_fine(hall, customer):
    start = local(3, 10)
    hold(hall, customer, start, start + timedelta(hours=2))

    with pytest.raises(services.SlotTaken) as caught:
        hold(hall, customer, start + timedelta(hours=1), start + timedelta(hours=3))
    assert (caught.value.status_code, caught.value.code) == (409, "slot_taken")
    hold(hall, customer, start + timedelta(hours=2), start + timedelta(hours=3))  # [10,12) then [12,13)
    hold(hall, customer, start - timedelta(hours=1), start)
    assert Booking.objects.count() == 3 and Payment.objects.count() == 3


def test_the_database_refuses_an_overlap_the_service_did_not_check(hall, customer):
    """The exclusion constraint, not the service's check, is the guarantee."""
    from django.db import IntegrityError, transaction

    first = hold(hall, customer, local(3, 10), local(3, 12))
    with pytest.raises(IntegrityError, match="booking_no_overlap"), transaction.atomic():
        Booking.objects.create(
            resource=hall, customer=customer, starts_at=local(3, 11), ends_at=local(3, 13),
            payment_kind="full", amount_total=1, amount_due=1, currency="EUR",
        )  # fmt: skip
    # Bookings that no longer hold time do not count.
    Booking.objects.filter(pk=first.pk).update(status="cancelled")
    Booking.objects.create(
        resource=hall, customer=customer, starts_at=local(3, 11), ends_at=local(3, 13),
        payment_kind="full", amount_total=1, amount_due=1, currency="EUR",
    )  # fmt: skip


def test_a_stale_hold_is_released_for_a_new_booking(hall, customer):
    start = local(3, 10)
    stale = hold(hall, customer, start, start + timedelta(hours=1))
    Booking.objects.filter(pk=stale.pk).update(hold_expires_at=timezone.now() - timedelta(seconds=1))

    fresh = hold(hall, customer, start, start + timedelta(hours=1))

    stale.refresh_from_db()
    assert stale.status == "expired" and fresh.status == "pending_payment"
    assert OutboxEvent.objects.filter(type="booking.expired", aggregate_id=stale.public_id).exists()


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (datetime(1, 1, 1, 0, 0), datetime(1, 1, 1, 2, 0), "start"),  # Berlin wall time before year 1 UTC
        (datetime(9999, 12, 31, 20, 0, tzinfo=timezone_of(timedelta(hours=-10))), None, "start"),
        (local(3, 10), datetime(9999, 12, 31, 23, 45, tzinfo=timezone_of(timedelta(hours=-10))), "end"),
    ],
)
def test_times_at_the_calendars_ends_are_400s_not_overflow_errors(hall, customer, start, end, field):
    end = end if end is not None else start + timedelta(hours=1)
    with pytest.raises(InvalidInput) as refused:
        hold(hall, customer, start, end)
    assert field in refused.value.extra["fields"]


def test_a_service_that_would_end_after_the_calendar_is_a_400(customer):
    stylist = StaffResourceFactory()
    service = ServiceFactory(resources=[stylist], duration_minutes=45)
    with pytest.raises(InvalidInput) as refused:
        hold(stylist, customer, datetime(9999, 12, 31, 23, 45, tzinfo=UTC), service_id=service.pk)
    assert "start" in refused.value.extra["fields"]
