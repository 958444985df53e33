"""Availability: the pure computation (examples, DST, and a hypothesis property test) and the API."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookings.api.views import _day_json
from bookings.availability import (
    STEP,
    DayAvailability,
    Interval,
    availability_compute,
    local_to_utc,
    opening_intervals,
)
from bookings.models import ScheduleException
from tests.bookings.conftest import local
from tests.factories import ServiceFactory, StaffResourceFactory

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = timedelta(minutes=1)
NINE_TO_NINE = {day: [(9 * 60, 21 * 60)] for day in range(7)}


def at(day: date, hour: int, minute: int = 0, tz=BERLIN) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def compute(day: date, *, weekly=None, exceptions=None, busy=(), duration=60, tz=BERLIN, **kwargs):
    return availability_compute(
        tz=tz,
        start_date=day,
        end_date=kwargs.pop("end_date", day),
        weekly=NINE_TO_NINE if weekly is None else weekly,
        exceptions=exceptions or {},
        busy=list(busy),
        duration=timedelta(minutes=duration),
        **kwargs,
    )


# --- examples -------------------------------------------------------------------------------
def test_free_time_is_opening_hours_minus_bookings_and_starts_fit_the_duration():
    day = date(2026, 12, 1)
    (result,) = compute(
        day, busy=[Interval(at(day, 10), at(day, 12)), Interval(at(day, 20, 30), at(day, 21))]
    )

    assert result.free == [
        Interval(at(day, 9), at(day, 10)),
        Interval(at(day, 12), at(day, 20, 30)),
    ]
    assert result.starts[0] == at(day, 9)
    assert at(day, 9, 15) not in result.starts  # 09:15 + 1 h runs into the 10:00 booking
    assert result.starts[1] == at(day, 12)
    assert result.starts[-1] == at(day, 19, 30)  # the last hour that ends by 20:30
    assert len(result.starts) == 1 + (19 * 4 + 2 - 12 * 4 + 1)


def test_several_intervals_a_day_and_exceptions_replace_the_weekday():
    day = date(2026, 12, 1)  # a Tuesday
    weekly = {1: [(9 * 60, 12 * 60), (13 * 60, 17 * 60)]}
    closed, special = day + timedelta(days=7), day + timedelta(days=14)
    days = compute(
        day,
        end_date=special,
        weekly=weekly,
        exceptions={closed: [], special: [(10 * 60, 11 * 60)]},
    )
    by_date = {d.date: d for d in days}
    assert by_date[day].free == [Interval(at(day, 9), at(day, 12)), Interval(at(day, 13), at(day, 17))]
    assert by_date[day + timedelta(days=1)].free == []  # Wednesday: no hours
    assert by_date[closed].free == [] and by_date[closed].starts == []
    assert by_date[special].free == [Interval(at(special, 10), at(special, 11))]
    assert len(days) == 15


def test_spring_forward_day_has_23_hours_and_a_skipped_opening_time_opens_after_the_jump():
    day = date(2027, 3, 28)  # Berlin: 02:00 -> 03:00
    (whole,) = compute(day, weekly={6: [(0, 24 * 60)]}, duration=15)
    assert whole.free[0].end - whole.free[0].start == timedelta(hours=23)
    assert len(whole.starts) == 23 * 4
    (early,) = compute(day, weekly={6: [(2 * 60 + 30, 5 * 60)]}, duration=15)
    assert early.free == [Interval(datetime(2027, 3, 28, 1, 0, tzinfo=UTC), at(day, 5))]  # 03:00 CEST
    assert local_to_utc(day, 2 * 60 + 30, BERLIN) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)


def test_fall_back_day_has_25_hours_and_the_repeated_hour_is_open_once_per_occurrence():
    day = date(2026, 10, 25)  # Berlin: 03:00 -> 02:00
    (whole,) = compute(day, weekly={6: [(0, 24 * 60)]}, duration=15)
    assert whole.free[0].end - whole.free[0].start == timedelta(hours=25)
    assert len(whole.starts) == 25 * 4
    local_starts = [s.astimezone(BERLIN).strftime("%H:%M") for s in whole.starts]
    assert local_starts.count("02:30") == 2
    # An ambiguous opening time is its first occurrence.
    assert local_to_utc(day, 2 * 60 + 30, BERLIN) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_nothing_before_now_and_now_is_rounded_up_to_the_grid():
    day = date(2026, 12, 1)
    (result,) = compute(day, not_before=at(day, 10, 7) + timedelta(seconds=30))
    assert result.free == [Interval(at(day, 10, 15), at(day, 21))]
    assert result.starts[0] == at(day, 10, 15)


def test_days_past_the_booking_horizon_are_listed_empty():
    day = date(2026, 12, 1)
    days = compute(day, end_date=day + timedelta(days=2), last_date=day + timedelta(days=1))
    assert [bool(d.free) for d in days] == [True, True, False]


def test_a_booking_may_run_on_into_the_next_days_hours_when_they_touch_at_midnight():
    day = date(2026, 12, 1)
    weekly = {1: [(20 * 60, 24 * 60)], 2: [(0, 2 * 60)]}
    first, second = compute(day, end_date=day + timedelta(days=1), weekly=weekly, duration=120)
    assert first.starts[-1] == at(day, 23, 45)  # 23:45 + 2 h ends at 01:45 the next day
    assert second.starts == [at(second.date, 0)]


def test_closing_at_midnight_means_the_end_of_the_day():
    day = date(2026, 12, 1)
    assert opening_intervals(day, tz=BERLIN, weekly={1: [(22 * 60, 24 * 60)]}, exceptions={}) == [
        Interval(at(day, 22), at(day + timedelta(days=1), 0))
    ]


# --- the property test ----------------------------------------------------------------------
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/Havana",
]
TRANSITION_DAYS = [
    date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1),
    date(2026, 10, 4), date(2026, 4, 5), date(2026, 3, 7),
]  # fmt: skip


@st.composite
def spans(draw) -> list[tuple[int, int]]:
    """Non-overlapping opening spans on the grid (quarter hours 0..96, so up to 24:00)."""
    points = sorted(draw(st.lists(st.integers(0, 96), unique=True, max_size=6)))
    return [(a * 15, b * 15) for a, b in zip(points[::2], points[1::2], strict=False)]


@st.composite
def schedules(draw):
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    start = draw(st.one_of(st.dates(date(2026, 1, 1), date(2027, 12, 31)), st.sampled_from(TRANSITION_DAYS)))
    start -= timedelta(days=draw(st.integers(0, 1)))
    end = start + timedelta(days=draw(st.integers(0, 3)))
    weekly = {day: draw(spans()) for day in range(7)}
    window_days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    exceptions = {
        day: draw(spans()) for day in draw(st.lists(st.sampled_from(window_days), unique=True, max_size=2))
    }
    window_start = local_to_utc(start, 0, tz)
    quarters = int((local_to_utc(end, 24 * 60, tz) - window_start) / STEP)
    busy = [
        Interval(window_start + STEP * first, window_start + STEP * (first + length))
        for first, length in draw(
            st.lists(st.tuples(st.integers(-8, quarters), st.integers(1, 24)), max_size=8)
        )
    ]
    not_before = draw(
        st.one_of(
            st.none(), st.integers(0, quarters * 15 * 60).map(lambda s: window_start + timedelta(seconds=s))
        )
    )
    duration = timedelta(minutes=draw(st.sampled_from([15, 30, 45, 60, 120])))
    return tz, start, end, weekly, exceptions, busy, not_before, duration


def wall_clock_day(day: date, tz) -> bool:
    """No clock change on this local day (nor at its midnights): wall time = elapsed time."""
    offsets = {tz.utcoffset(datetime.combine(day + timedelta(days=n), time(0))) for n in (0, 1)}
    offsets |= {tz.utcoffset(datetime.combine(day, time(h))) for h in range(24)}
    return len(offsets) == 1


def slot_open(t: datetime, tz, days, weekly, exceptions) -> bool:
    """Oracle: is [t, t + 15 min) inside the opening hours of some local day of the window?

    On days without a clock change it compares wall-clock minutes (independently of the code
    under test); on the few days with one it uses local_to_utc, tested by the examples above.
    """
    for day in days:
        spans_of_day = exceptions.get(day, weekly.get(day.weekday(), []))
        if wall_clock_day(day, tz):
            moment = t.astimezone(tz)
            if moment.date() != day:
                continue
            minutes = moment.hour * 60 + moment.minute
            if any(opens <= minutes and minutes + 15 <= closes for opens, closes in spans_of_day):
                return True
        else:
            for opens, closes in spans_of_day:
                if local_to_utc(day, opens, tz) <= t and t + STEP <= local_to_utc(day, closes, tz):
                    return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_free_slots_are_exactly_the_open_grid_slots_no_booking_touches(schedule):
    tz, start, end, weekly, exceptions, busy, not_before, duration = schedule
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]

    result = availability_compute(
        tz=tz, start_date=start, end_date=end, weekly=weekly, exceptions=exceptions,
        busy=busy, duration=duration, not_before=not_before,
    )  # fmt: skip

    window_start, window_end = local_to_utc(start, 0, tz), local_to_utc(end, 24 * 60, tz)
    expected: set[datetime] = set()
    t = window_start
    while t < window_end:
        free = (
            slot_open(t, tz, days, weekly, exceptions)
            and not any(b.overlaps(Interval(t, t + STEP)) for b in busy)
            and (not_before is None or t >= not_before)
        )
        if free:
            expected.add(t)
        t += STEP

    returned: set[datetime] = set()
    for day in result:
        for interval in day.free:
            assert interval.start < interval.end
            assert interval.start.astimezone(tz).date() == day.date or not wall_clock_day(day.date, tz)
            slot = interval.start
            while slot < interval.end:
                assert slot not in returned, "a slot is listed twice"
                returned.add(slot)
                slot += STEP
            assert slot == interval.end, "free intervals are on the grid"
    # No returned slot overlaps a booking or lies outside the opening hours; none is missing.
    assert returned == expected
    starts = [s for day in result for s in day.starts]
    assert len(starts) == len(set(starts))
    for s in starts:
        assert all(s + STEP * k in expected for k in range(duration // STEP)), f"{s} does not fit"
    fitting = {t for t in expected if all(t + STEP * k in expected for k in range(duration // STEP))}
    assert set(starts) == fitting


# --- through the API -----------------------------------------------------------------------
@pytest.mark.django_db
def test_availability_api_lists_free_intervals_and_starts_in_local_time(api_client, hall, customer):
    from bookings import services

    day = local(3, 0)
    services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 12)
    )
    ScheduleException.objects.create(resource=hall, date=local(4, 0).date(), closed=True)

    response = api_client.get(
        "/api/bookings/availability",
        {
            "hall_id": hall.pk,
            "start_date": day.date().isoformat(),
            "end_date": local(4, 0).date().isoformat(),
        },
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["resource_id"], body["timezone"], body["slot_minutes"], body["duration_minutes"]) == (
        hall.pk, "Europe/Berlin", 15, 60,
    )  # fmt: skip
    first, closed = body["days"]
    assert first["free"] == [
        {"start": local(3, 9).isoformat(), "end": local(3, 10).isoformat()},
        {"start": local(3, 12).isoformat(), "end": local(3, 21).isoformat()},
    ]
    assert first["starts"][:2] == [local(3, 9).isoformat(), local(3, 12).isoformat()]
    assert local(3, 10).isoformat() not in first["starts"]
    assert closed == {"date": local(4, 0).date().isoformat(), "free": [], "starts": []}


@pytest.mark.django_db
def test_availability_for_a_service_lists_starts_where_it_fits(api_client):
    stylist = StaffResourceFactory(hours=[(d, "09:00", "10:00") for d in range(7)])
    service = ServiceFactory(resources=[stylist], duration_minutes=45)
    day = local(3, 0, tz=stylist.tz).date().isoformat()

    response = api_client.get(
        "/api/bookings/availability",
        {"resource_id": stylist.pk, "service_id": service.pk, "start_date": day, "end_date": day},
    )

    starts = response.json()["days"][0]["starts"]
    assert [s[11:16] for s in starts] == ["09:00", "09:15"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start_date": "2026-12-01", "end_date": "2026-12-02"}, "hall_id"),
        ({"hall_id": 1, "end_date": "2026-12-02"}, "start_date"),
        ({"hall_id": 1, "start_date": "2026-12-01", "end_date": "tomorrow"}, "end_date"),
        ({"hall_id": 1, "start_date": "2026-12-03", "end_date": "2026-12-01"}, "end_date"),
        ({"hall_id": 1, "start_date": "2026-12-01", "end_date": "2027-03-01"}, "end_date"),
    ],
)
def test_availability_bad_queries_are_400s_naming_the_field(api_client, params, field):
    response = api_client.get("/api/bookings/availability", params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["extra"]["fields"]


@pytest.mark.django_db
def test_availability_of_an_unknown_hall_is_a_400(api_client):
    response = api_client.get(
        "/api/bookings/availability",
        {
            "hall_id": 999999,
            "start_date": (tomorrow := date.today() + timedelta(days=1)),
            "end_date": tomorrow,
        },
    )
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_resource"
    assert "hall_id" in response.json()["extra"]["fields"]


@pytest.mark.django_db
def test_availability_reads_a_fixed_number_of_queries(
    api_client, hall, customer, django_assert_max_num_queries
):
    from bookings import services

    for days in range(2, 8):
        services.booking_hold(
            customer_id=customer.pk, resource_id=hall.pk, starts_at=local(days, 10), ends_at=local(days, 11)
        )
    start = local(1, 0).date()
    with django_assert_max_num_queries(4) as queries:  # resource, weekly hours, exceptions, bookings
        response = api_client.get(
            "/api/bookings/availability",
            {"hall_id": hall.pk, "start_date": start, "end_date": start + timedelta(days=29)},
        )
    assert response.status_code == 200
    assert len(response.json()["days"]) == 30
    # Each reads its own table only (the hours' model ordering would join the resource's).
    assert not [q["sql"] for q in queries.captured_queries if "JOIN" in q["sql"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hall_id": 0}, "hall_id"),  # not a resource (was a KeyError)
        ({"hall_id": 2**70}, "hall_id"),
        ({"start_date": "9999-12-30", "end_date": "9999-12-31"}, "start_date"),
        ({"start_date": "0001-01-01", "end_date": "0001-01-02"}, "end_date"),
        ({"end_date": "9999-12-31"}, "end_date"),
    ],
)
def test_availability_at_the_edges_of_the_calendar_is_a_400_not_a_500(api_client, hall, params, field):
    day = local(1, 0).date().isoformat()
    api_client.raise_request_exception = False

    response = api_client.get(
        "/api/bookings/availability", {"hall_id": hall.pk, "start_date": day, "end_date": day} | params
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] in ("invalid", "unknown_resource")
    assert field in response.json()["extra"]["fields"]


@pytest.mark.django_db
@override_settings(BOOKING_MAX_DAYS_AHEAD=10**7)  # the dates' bounds let year 9999 through
def test_an_overflow_past_the_dates_bounds_is_still_a_400(api_client, hall):
    api_client.raise_request_exception = False

    response = api_client.get(
        "/api/bookings/availability",
        {"hall_id": hall.pk, "start_date": "9999-12-30", "end_date": "9999-12-31"},
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid"
    assert "end_date" in response.json()["extra"]["fields"]


# --- the response, written fast ------------------------------------------------------------
def written_the_long_way(day: DayAvailability, tz) -> dict:
    return {
        "date": day.date.isoformat(),
        "free": [
            {"start": i.start.astimezone(tz).isoformat(), "end": i.end.astimezone(tz).isoformat()}
            for i in day.free
        ],
        "starts": [s.astimezone(tz).isoformat() for s in day.starts],
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_the_days_are_written_as_astimezone_and_isoformat_would(schedule):
    tz, start, end, weekly, exceptions, busy, not_before, duration = schedule
    result = availability_compute(
        tz=tz, start_date=start, end_date=end, weekly=weekly, exceptions=exceptions,
        busy=busy, duration=duration, not_before=not_before,
    )  # fmt: skip
    for day in result:
        assert _day_json(day, tz) == written_the_long_way(day, tz)


@pytest.mark.parametrize("tz", [BERLIN, ZoneInfo("Asia/Kathmandu"), ZoneInfo("America/St_Johns"), UTC])
def test_times_off_the_grid_or_at_the_next_midnight_are_written_too(tz):
    day = date(2026, 12, 1)
    odd = DayAvailability(
        day,
        free=[
            Interval(at(day, 9, 10, tz), at(day, 12, tz=tz)),
            Interval(at(day, 22, tz=tz), at(day + timedelta(days=1), 0, tz=tz)),
        ],
        starts=[at(day, 9, 10, tz), at(day, 22, tz=tz) + timedelta(seconds=1), at(day, 23, 45, tz)],
    )
    assert _day_json(odd, tz) == written_the_long_way(odd, tz)


# --- busy time on PostgreSQL ---------------------------------------------------------------
@pytest.mark.django_db
def test_busy_time_is_what_holding_bookings_selects(hall, customer):
    from django.utils import timezone

    from bookings.models import Booking
    from bookings.selectors import busy_intervals, holding_bookings
    from tests.factories import ResourceFactory

    now = timezone.now()
    other = ResourceFactory()

    def book(resource, start, end, status="confirmed", hold=None):
        return Booking.objects.create(
            resource=resource, customer=customer, starts_at=start, ends_at=end, status=status,
            payment_kind="deposit", amount_total=40, amount_due=12, currency="EUR", hold_expires_at=hold,
        )  # fmt: skip

    book(hall, local(3, 9), local(3, 10))  # confirmed
    book(hall, local(3, 10), local(3, 11), "pending_payment", now + timedelta(minutes=5))  # a live hold
    book(hall, local(3, 11), local(3, 12), "pending_payment", now - timedelta(minutes=1))  # past its deadline
    book(hall, local(3, 12), local(3, 13), "pending_payment")  # a hold without a deadline
    book(hall, local(3, 12), local(3, 13), "cancelled")
    book(hall, local(3, 13), local(3, 14), "expired")
    book(hall, local(3, 13), local(3, 14), "completed")
    book(other, local(3, 9), local(3, 10))
    book(hall, local(2, 23), local(3, 1))  # from the day before, into the window
    book(hall, local(4, 0), local(4, 1))  # touches the window's end: outside the half-open window
    start, end = local(3, 0), local(4, 0)

    busy = busy_intervals(resource_id=hall.pk, start=start, end=end, now=now)

    expected = holding_bookings(resource_id=hall.pk, start=start, end=end, now=now).values_list(
        "starts_at", "ends_at"
    )
    assert sorted(busy) == sorted(Interval(s, e) for s, e in expected)
    assert sorted(b.start.astimezone(BERLIN).hour for b in busy) == [9, 10, 12, 23]


# --- rate limits -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_availability_is_rate_limited_once_per_request_and_fails_open(
    api_client, hall, customer, monkeypatch
):
    from rest_framework.throttling import SimpleRateThrottle

    reads: list[str] = []

    class Counting:
        def get(self, key, default=None):
            reads.append(key)
            return default

        def set(self, key, value, timeout=None):
            pass

    class Down:
        def get(self, key, default=None):
            raise ConnectionError("redis is down")

        set = get

    day = local(1, 0).date().isoformat()
    params = {"hall_id": hall.pk, "start_date": day, "end_date": day}
    monkeypatch.setattr(SimpleRateThrottle, "cache", Counting())

    assert api_client.get("/api/bookings/availability", params).status_code == 200
    assert len(reads) == 1  # anonymous: by address, once
    api_client.force_authenticate(customer)
    assert api_client.get("/api/bookings/availability", params).status_code == 200
    assert len(reads) == 2 and reads[1] != reads[0]  # signed in: by user, once

    monkeypatch.setattr(SimpleRateThrottle, "cache", Down())
    api_client.raise_request_exception = False
    assert api_client.get("/api/bookings/availability", params).status_code == 200
