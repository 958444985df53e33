"""Fixtures for bookings: a hall open 09:00-21:00 every day in Berlin, a customer, staff."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from tests.factories import ResourceFactory, StaffFactory, UserFactory

BERLIN = ZoneInfo("Europe/Berlin")


def local(days: int, hour: int, minute: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    """`days` from today, at hour:minute local wall time (aware)."""
    day = timezone.now().astimezone(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), tzinfo=tz)


@pytest.fixture
def hall():
    return ResourceFactory()


@pytest.fixture
def customer():
    return UserFactory()


@pytest.fixture
def staff():
    return StaffFactory()
