"""Reads on bookings: who sees what, and the inputs and result of an availability query."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Q, QuerySet, Value
from django.db.models.functions import Cast
from django.utils import timezone

from bookings.availability import (
    DayAvailability,
    Interval,
    Span,
    availability_compute,
    local_to_utc,
    opening_intervals,
)
from bookings.constraints import TsTzRange
from bookings.models import (
    HOLDING_STATUSES,
    Booking,
    OpeningHours,
    Resource,
    ScheduleException,
    Service,
    minutes_of_day,
)


def bookings_visible_to(user) -> QuerySet[Booking]:
    """Staff see every booking; a customer only their own."""
    queryset = Booking.objects.select_related("resource", "service", "payment", "customer")
    return queryset if user.is_staff else queryset.filter(customer=user)


def resource_weekly_hours(*, resource_id: int) -> dict[int, list[Span]]:
    weekly: dict[int, list[Span]] = {}
    # Unordered: the models' ordering starts with the resource, which would join its table to
    # sort by its name.
    rows = (
        OpeningHours.objects.filter(resource_id=resource_id)
        .order_by()
        .values_list("weekday", "opens", "closes")
    )
    for weekday, opens, closes in rows:
        weekly.setdefault(weekday, []).append((minutes_of_day(opens), minutes_of_day(closes, closing=True)))
    return weekly


def resource_exceptions(*, resource_id: int, start_date: date, end_date: date) -> dict[date, list[Span]]:
    """Per date with exception rows: its special spans, or [] when it is closed."""
    exceptions: dict[date, list[Span]] = {}
    closed: set[date] = set()
    rows = (
        ScheduleException.objects.filter(resource_id=resource_id, date__gte=start_date, date__lte=end_date)
        .order_by()  # unordered, like the weekly hours
        .values_list("date", "closed", "opens", "closes")
    )
    for day, is_closed, opens, closes in rows:
        spans = exceptions.setdefault(day, [])
        if is_closed:
            closed.add(day)
        else:
            spans.append((minutes_of_day(opens), minutes_of_day(closes, closing=True)))
    for day in closed:
        exceptions[day] = []
    return exceptions


def holding_bookings(
    *, resource_id: int, start: datetime, end: datetime, now: datetime | None = None
) -> QuerySet[Booking]:
    """Bookings of the resource that hold time overlapping [start, end).

    On PostgreSQL the filter is the exclusion constraint's own expression and predicate, so
    its GiST index finds exactly the bookings in the window (docs/benchmarks.md, EXPLAIN).
    With `now`, holds past their deadline that beat has not expired yet do not count.
    """
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

        # A bigint literal: btree_gist has no int8-int4 operator, and the index's first
        # column must match for the GiST index to narrow by resource too.
        queryset = (
            Booking.objects.filter(
                resource_id=Cast(Value(resource_id), BigIntegerField()), status__in=HOLDING_STATUSES
            )
            .alias(during=TsTzRange("starts_at", "ends_at"))
            .filter(during__overlap=DateTimeTZRange(start, end, "[)"))
        )
    else:
        queryset = Booking.objects.filter(resource_id=resource_id, status__in=HOLDING_STATUSES)
        queryset = queryset.filter(starts_at__lt=end, ends_at__gt=start)
    if now is not None:
        queryset = queryset.filter(
            Q(status=Booking.Status.CONFIRMED) | Q(hold_expires_at__isnull=True) | Q(hold_expires_at__gte=now)
        )
    return queryset


def busy_intervals(*, resource_id: int, start: datetime, end: datetime, now: datetime) -> list[Interval]:
    """The time held on the resource in [start, end) (unordered: merged later)."""
    if connection.vendor != "postgresql":
        queryset = holding_bookings(resource_id=resource_id, start=start, end=end, now=now).order_by()
        return [Interval(s, e) for s, e in queryset.values_list("starts_at", "ends_at")]
    with connection.cursor() as cursor:
        cursor.execute(*busy_query(resource_id=resource_id, start=start, end=end, now=now))
        rows = cursor.fetchall()
    return [Interval(datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC)) for s, e in rows]


# holding_bookings(now=...) on PostgreSQL, written out: building it with the ORM took longer
# than PostgreSQL takes to run it (about 1.3 of 3 ms, docs/benchmarks.md). The same filter:
# the exclusion constraint's own expression and predicate, so that its GiST index applies;
# the resource as a bigint (btree_gist has no int8 = int4 operator, and the index's first
# column must match for it to narrow by resource too). Whole epoch seconds (bookings are on
# the grid) load several times faster than timestamptz text. tests/bookings/test_availability.py
# checks it against holding_bookings().
BUSY_SQL = f"""
SELECT EXTRACT(EPOCH FROM starts_at)::bigint, EXTRACT(EPOCH FROM ends_at)::bigint
FROM {Booking._meta.db_table}
WHERE resource_id = %(resource_id)s::bigint
  AND status IN ({", ".join(f"'{status}'" for status in HOLDING_STATUSES)})
  AND tstzrange(starts_at, ends_at) && tstzrange(%(start)s, %(end)s, '[)')
  AND (status = '{Booking.Status.CONFIRMED.value}' OR hold_expires_at IS NULL OR hold_expires_at >= %(now)s)
"""  # noqa: S608 - no input in the text: table and statuses are the model's constants


def busy_query(*, resource_id: int, start: datetime, end: datetime, now: datetime) -> tuple[str, dict]:
    """busy_intervals' SQL and parameters on PostgreSQL (also for the bench's EXPLAIN)."""
    return BUSY_SQL, {"resource_id": resource_id, "start": start, "end": end, "now": now}


def resource_opening_intervals(*, resource: Resource, start: datetime, end: datetime) -> list[Interval]:
    """The resource's opening intervals on the local days that [start, end) touches."""
    tz = resource.tz
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    weekly = resource_weekly_hours(resource_id=resource.pk)
    exceptions = resource_exceptions(resource_id=resource.pk, start_date=first, end_date=last)
    intervals: list[Interval] = []
    day = first
    while day <= last:
        intervals += opening_intervals(day, tz=tz, weekly=weekly, exceptions=exceptions)
        day += timedelta(days=1)
    return intervals


@dataclass
class Availability:
    resource: Resource
    service: Service | None
    start_date: date
    end_date: date
    duration: timedelta
    days: list[DayAvailability]


def booking_duration(*, resource: Resource, service: Service | None) -> timedelta:
    """The length a start time must fit: the service's, or the resource's shortest booking."""
    return timedelta(minutes=service.duration_minutes if service else resource.min_booking_minutes)


def availability_for(
    *,
    resource: Resource,
    start_date: date,
    end_date: date,
    service: Service | None = None,
    now: datetime | None = None,
) -> Availability:
    """Free intervals and start times per local day: three small queries, then pure computation."""
    now = now or timezone.now()
    tz = resource.tz
    window_start = local_to_utc(start_date, 0, tz)
    window_end = local_to_utc(end_date, 24 * 60, tz)
    duration = booking_duration(resource=resource, service=service)
    days = availability_compute(
        tz=tz,
        start_date=start_date,
        end_date=end_date,
        weekly=resource_weekly_hours(resource_id=resource.pk),
        exceptions=resource_exceptions(resource_id=resource.pk, start_date=start_date, end_date=end_date),
        # A booking may run on past the window's end: look one duration further.
        busy=busy_intervals(resource_id=resource.pk, start=window_start, end=window_end + duration, now=now),
        duration=duration,
        not_before=now,
        last_date=now.astimezone(tz).date() + timedelta(days=settings.BOOKING_MAX_DAYS_AHEAD),
    )
    return Availability(resource, service, start_date, end_date, duration, days)
