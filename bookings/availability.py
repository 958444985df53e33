"""Availability as a pure function: opening hours, exceptions and busy times in, free time out.

No database here (bookings.selectors loads the inputs), so the property tests can drive it
with any schedule. Times of day are minutes since local midnight (1440 is the next
midnight); instants are aware datetimes in UTC. Local days are turned into instants with
zoneinfo, so a day may have 23 or 25 hours and the opening hours stay wall-clock hours.

The 15-minute grid is counted from the Unix epoch in UTC. That is the same grid as the local
one for every time zone in use today: all their offsets are whole multiples of 15 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import NamedTuple, TypeVar

STEP = timedelta(minutes=15)
DAY_MINUTES = 24 * 60
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

T = TypeVar("T")
Span = tuple[int, int]  # (opens, closes) in minutes since local midnight, closes <= 1440


class Interval(NamedTuple):  # a tuple: cheap to create and compare, ordered by (start, end)
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class DayAvailability:
    date: date
    free: list[Interval] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)


def align_up(moment: datetime, step: timedelta = STEP) -> datetime:
    rest = (moment - EPOCH) % step
    return moment if not rest else moment + (step - rest)


def on_grid(moment: datetime, step: timedelta = STEP) -> bool:
    return (moment - EPOCH) % step == timedelta(0)


def local_to_utc(day: date, minutes: int, tz: tzinfo) -> datetime:
    """The instant the wall clock of `tz` first shows `minutes` past midnight of `day`.

    An ambiguous time (the hour repeated when clocks go back) is its first occurrence; a time
    skipped when clocks go forward is the first instant after the jump (opening at 02:30 on
    a day that jumps from 02:00 to 03:00 opens at 03:00).
    """
    day = day + timedelta(days=minutes // DAY_MINUTES)
    minutes %= DAY_MINUTES
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    moment = naive.replace(tzinfo=tz).astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) == naive:
        return moment
    # Skipped: walk from the earlier reading of the two offsets to the first later wall time.
    moment = min(moment, naive.replace(tzinfo=tz, fold=1).astimezone(UTC))
    for _ in range(4 * 24):
        if moment.astimezone(tz).replace(tzinfo=None) >= naive:
            return moment
        moment += STEP
    raise ValueError(f"cannot place {naive} in {tz}")  # pragma: no cover - no zone skips a day


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if interval.end <= interval.start:
            continue
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def subtract(intervals: Sequence[Interval], busy: Sequence[Interval]) -> list[Interval]:
    """`intervals` minus `busy` (both sorted and merged)."""
    return [piece for piece, _ in subtract_tagged([(i, None) for i in intervals], busy)]


def subtract_tagged(
    intervals: Sequence[tuple[Interval, T]], busy: Sequence[Interval]
) -> list[tuple[Interval, T]]:
    """Like subtract(), each free piece keeping the tag of the interval it came from; one pass."""
    free: list[tuple[Interval, T]] = []
    i = 0
    for interval, tag in intervals:
        start = interval.start
        while i < len(busy) and busy[i].end <= start:
            i += 1
        j = i
        while j < len(busy) and busy[j].start < interval.end:
            if busy[j].start > start:
                free.append((Interval(start, busy[j].start), tag))
            start = max(start, busy[j].end)
            j += 1
        if start < interval.end:
            free.append((Interval(start, interval.end), tag))
    return free


def day_spans(day: date, weekly: Mapping[int, Sequence[Span]], exceptions: Mapping[date, Sequence[Span]]):
    """The day's opening spans: its exception rows if it has any (none: closed), else its weekday's."""
    return exceptions[day] if day in exceptions else weekly.get(day.weekday(), ())


def opening_intervals(
    day: date, *, tz: tzinfo, weekly: Mapping[int, Sequence[Span]], exceptions: Mapping[date, Sequence[Span]]
) -> list[Interval]:
    return merge(
        Interval(local_to_utc(day, opens, tz), local_to_utc(day, closes, tz))
        for opens, closes in day_spans(day, weekly, exceptions)
    )


def dates(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def availability_compute(
    *,
    tz: tzinfo,
    start_date: date,
    end_date: date,
    weekly: Mapping[int, Sequence[Span]],
    exceptions: Mapping[date, Sequence[Span]],
    busy: Iterable[Interval],
    duration: timedelta,
    not_before: datetime | None = None,
    last_date: date | None = None,
) -> list[DayAvailability]:
    """Free intervals and bookable start times per local day from `start_date` to `end_date`.

    Free: opening hours minus busy time, from `not_before` (rounded up to the grid) on; days
    after `last_date` have none. Starts: the grid times from which `duration` fits in free
    time (a booking may run on into the next day's free time when the two touch at midnight).
    """
    busy = merge(busy)
    floor = align_up(not_before) if not_before else None
    days = [DayAvailability(day) for day in dates(start_date, end_date)]
    open_days = [d for d in days if last_date is None or d.date <= last_date]
    # Each day's opening intervals lie within that local day, so in day order they are sorted.
    opening = [
        (interval, day)
        for day in open_days
        for interval in opening_intervals(day.date, tz=tz, weekly=weekly, exceptions=exceptions)
    ]
    for piece, day in subtract_tagged(opening, busy):
        if floor is not None:
            if piece.end <= floor:
                continue
            if piece.start < floor:
                piece = Interval(floor, piece.end)
        day.free.append(piece)
    # Starts: walk the joined free time once; a start belongs to the local day it falls on.
    boundaries = [(local_to_utc(day.date, 0, tz), day) for day in open_days]
    k = 0
    for interval in merge(piece for day in open_days for piece in day.free):
        start = align_up(interval.start)
        while start + duration <= interval.end:
            while k + 1 < len(boundaries) and boundaries[k + 1][0] <= start:
                k += 1
            boundaries[k][1].starts.append(start)
            start += STEP
    return days


def covered(start: datetime, end: datetime, intervals: Sequence[Interval]) -> bool:
    """Whether [start, end) lies inside the union of `intervals`."""
    return any(i.start <= start and end <= i.end for i in merge(intervals))
